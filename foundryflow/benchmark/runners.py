"""Runners: what "run a benchmark" does for one cell of the matrix.

A worker claims cells from the queue and hands each to a runner, which returns the cell's
metrics as a JSON-serialisable dict (stored as one ``benchmark_results`` row).

Runners register like actions: through the ``foundryflow.runners`` entry-point group, the
entry-point name being the runner name (``--runner http``). The set of known runners is
known without importing any of them; a runner is imported on first use, and one that is
registered but does not import is reported as "registered but not implemented".

A runner class subclasses :class:`BaseRunner`: a ``name`` equal to its entry-point name
and an ``Options`` pydantic model. Options arrive as strings from the command line
(``--runner-option key=value``, see :func:`parse_runner_options`) and are validated by that
model, so unknown keys and bad values are errors before any cell is claimed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from foundryflow.entrypoints import EntryPointRegistry

GROUP = "foundryflow.runners"


class BenchmarkCell(Protocol):
    """What a runner needs of a claimed config (``foundryflow.benchmark.queue.ClaimedConfig``
    has these and more); read-only so frozen dataclasses satisfy it."""

    @property
    def id(self) -> int: ...

    @property
    def workload_type(self) -> str: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def sequence_length(self) -> int: ...


class Runner(Protocol):
    """What a worker calls: one cell in, JSON-serialisable metrics out; raise to fail it."""

    @property
    def name(self) -> str: ...

    def run(self, cell: BenchmarkCell) -> dict[str, Any]: ...


class RunnerOptions(BaseModel):
    """Base of every runner's options model: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=RunnerOptions)


class BaseRunner(ABC, Generic[OptionsT]):
    """Base class of registered runners; satisfies :class:`Runner`."""

    name: ClassVar[str]
    Options: ClassVar[type[RunnerOptions]]

    def __init__(self, options: OptionsT) -> None:
        self.options = options

    @abstractmethod
    def run(self, cell: BenchmarkCell) -> dict[str, Any]:
        """Benchmark one cell; the returned dict must be JSON-serialisable (no NaN)."""


class UnknownRunnerError(LookupError):
    """No entry point of that name."""


class RunnerNotImplementedError(LookupError):
    """An entry point exists but does not load to a runner class."""


class RunnerOptionsError(ValueError):
    """Options that the runner's options model rejects (or ``key=value`` that does not parse)."""


def _describe(error: Any, known: Iterable[str]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "options"
    if error["type"] == "extra_forbidden":
        return f"unknown option {where!r} (known: {', '.join(sorted(known))})"
    if error["type"] == "missing":
        return f"{where}: required"
    return f"{where}: {error['msg']}"


class RunnerRegistry(EntryPointRegistry[BaseRunner[Any]]):
    """Runner classes by name, from an entry-point group (see :mod:`foundryflow.entrypoints`)."""

    kind = "runner"
    unknown_error = UnknownRunnerError
    not_implemented_error = RunnerNotImplementedError

    def __init__(self, group: str = GROUP, entry_points: Iterable[EntryPoint] | None = None):
        super().__init__(group, entry_points)

    def _accepts(self, loaded: Any) -> bool:
        return isinstance(loaded, type) and issubclass(loaded, BaseRunner)

    def _declared_name(self, cls: type[BaseRunner[Any]]) -> str | None:
        return getattr(cls, "name", None)

    def get(self, name: str) -> type[BaseRunner[Any]]:
        """As the base class, with the known runners in the unknown-name message (the CLI
        shows it as it is)."""
        try:
            return super().get(name)
        except UnknownRunnerError:
            known = ", ".join(self.names()) or "none registered"
            raise UnknownRunnerError(f"unknown runner {name!r} (known runners: {known})") from None

    def create(self, name: str, options: Mapping[str, object]) -> Runner:
        """The runner ``name`` configured with ``options``, validated by its options model."""
        cls = self.get(name)
        try:
            validated = cls.Options.model_validate(dict(options))
        except ValidationError as exc:
            known = cls.Options.model_fields.keys()
            problems = "; ".join(_describe(e, known) for e in exc.errors())
            raise RunnerOptionsError(f"runner {name!r}: invalid options: {problems}") from None
        try:
            return cls(validated)
        except ValueError as exc:  # checks that need more than one field, or the environment
            raise RunnerOptionsError(f"runner {name!r}: invalid options: {exc}") from exc


def parse_runner_options(pairs: Iterable[str]) -> dict[str, str]:
    """``["rounds=3", "model=m"]`` (repeated ``--runner-option key=value``) to a dict."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RunnerOptionsError(f"runner option {pair!r} is not key=value")
        if key in options:
            raise RunnerOptionsError(f"runner option {key!r} given twice")
        options[key] = value
    return options


registry = RunnerRegistry()
"""The process-wide registry; entry points are read once, on first use."""


def get_runner(name: str, **options: object) -> Runner:
    """The registered runner ``name`` with ``options`` (strings from the CLI are coerced)."""
    return registry.create(name, options)
