"""Where a model's ``config.json`` comes from: a local directory, the bundled catalog, the Hub.

Sources are tried in the order of a policy: the caller's, else
``FOUNDRYFLOW_MODEL_CONFIG_SOURCES`` (comma-separated), else ``local,bundled,hub``. An
operator's directory overrides everything; the bundled catalog answers for well-known
guardrail and LLM models with no network and no token for gated repositories; the Hub covers
the rest when the machine is online. A source without the model says where it looked, so
"not found" lists every place that was tried.

The Hub token is the caller's (resolved from an Airflow connection). It is sent only as an
``Authorization`` header to the configured endpoint (httpx drops it on a redirect to another
host) and is never logged or put in a message: errors carry no chained httpx exception,
whose request would hold the header.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, Protocol, cast, get_args

import httpx
from pydantic import SecretStr

log = logging.getLogger(__name__)

SourceName = Literal["local", "bundled", "hub"]
DEFAULT_POLICY: Final[tuple[SourceName, ...]] = ("local", "bundled", "hub")
POLICY_ENV: Final = "FOUNDRYFLOW_MODEL_CONFIG_SOURCES"
LOCAL_DIR_ENV: Final = "FOUNDRYFLOW_MODEL_CONFIG_DIR"
HUB_ENDPOINT_ENVS: Final = ("FOUNDRYFLOW_HF_ENDPOINT", "HF_ENDPOINT")
"""Ours first; ``HF_ENDPOINT`` too, so a mirror set up for huggingface_hub applies here."""
OFFLINE_ENVS: Final = ("FOUNDRYFLOW_OFFLINE", "HF_HUB_OFFLINE")
DEFAULT_HUB_ENDPOINT: Final = "https://huggingface.co"
MAX_CONFIG_BYTES: Final = 1 << 20
"""A config.json is a few kB; a response past 1 MiB is not one (a captive portal, a mistake)."""

_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_MODEL_ID = re.compile(rf"{_PART}/{_PART}")
"""The Hub's rule (huggingface_hub ``validate_repo_id``) restricted to ASCII, org required:
each part starts and ends with a word character, so no part is ``.``, ``..`` or hidden."""
_TRUE = frozenset({"1", "true", "yes", "on"})


class ModelConfigError(Exception):
    """A model's config.json could not be obtained or used; the message says why."""


class InvalidModelIdError(ModelConfigError, ValueError):
    """Not an ``org/name`` Hub id: rejected before it reaches a path or a URL."""


class InvalidModelConfigError(ModelConfigError):
    """A config.json was found but is not a JSON object: an error, not a reason to fall back,
    because silently using another source would hide the broken file."""


class ModelConfigNotFoundError(ModelConfigError, LookupError):
    def __init__(self, model_id: str, looked: Sequence[str]) -> None:
        self.model_id = model_id
        self.looked = list(looked)
        places = "\n".join(f"  - {place}" for place in looked) or "  (no sources configured)"
        super().__init__(f"no config.json found for {model_id}; looked in:\n{places}")


class NotInSource(Exception):
    """Raised by a source that does not have the model; the message says where it looked."""


@dataclass(frozen=True)
class FetchedConfig:
    model_id: str
    source: str
    """The name of the source that answered: ``local``, ``bundled`` or ``hub``."""
    location: str
    """The file or URL it was read from, for the audit trail."""
    config: dict[str, Any]


class ConfigSource(Protocol):
    name: str

    def fetch(self, model_id: str) -> FetchedConfig:
        """The model's config.json, or :class:`NotInSource` saying where it looked."""
        ...


def split_model_id(model_id: object) -> tuple[str, str]:
    """``(org, name)`` of a valid Hub id; anything else (a path, a URL, empty) is refused."""
    if not isinstance(model_id, str) or not model_id.strip():
        raise InvalidModelIdError("model id is empty: expected a Hub id 'org/name'")
    shown = repr(model_id[:120])
    if "://" in model_id:
        raise InvalidModelIdError(
            f"model id {shown} is a URL: give the Hub id 'org/name' (the path after the host)"
        )
    if not _MODEL_ID.fullmatch(model_id) or ".." in model_id or "--" in model_id:
        raise InvalidModelIdError(
            f"invalid model id {shown}: expected 'org/name', each part of letters, digits, "
            "'-', '_' and '.', starting and ending with a letter or digit, no '..' or '--'"
        )
    org, name = model_id.split("/")
    return org, name


def _parse(raw: bytes, location: str) -> dict[str, Any]:
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidModelConfigError(f"{location} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise InvalidModelConfigError(f"{location} holds a {type(config).__name__}, not an object")
    return config


class LocalDirectorySource:
    """``<root>/<org>/<name>/config.json``; root given, else ``FOUNDRYFLOW_MODEL_CONFIG_DIR``.

    The environment is read at fetch time, so a long-lived worker picks up a changed setting.
    """

    name = "local"

    def __init__(self, root: Path | str | None = None) -> None:
        self._root = Path(root) if root is not None else None

    def root(self) -> Path | None:
        if self._root is not None:
            return self._root
        configured = os.environ.get(LOCAL_DIR_ENV, "").strip()
        return Path(configured) if configured else None

    def fetch(self, model_id: str) -> FetchedConfig:
        org, name = split_model_id(model_id)
        root = self.root()
        if root is None:
            raise NotInSource(f"local directory: not configured ({LOCAL_DIR_ENV} is unset)")
        path = root / org / name / "config.json"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise NotInSource(f"local directory: no {path}") from None
        except OSError as exc:
            raise InvalidModelConfigError(f"cannot read {path}: {exc.strerror}") from None
        return FetchedConfig(model_id, self.name, str(path), _parse(raw, str(path)))


class BundledSource:
    """The configs shipped in this package (``foundryflow/registry/configs/<org>__<name>.json``):
    the published config.json of well-known guardrail and LLM models, for offline machines."""

    name = "bundled"

    def fetch(self, model_id: str) -> FetchedConfig:
        org, name = split_model_id(model_id)
        filename = f"{org}__{name}.json"
        location = f"foundryflow/registry/configs/{filename}"
        resource = resources.files("foundryflow.registry").joinpath("configs", filename)
        if not resource.is_file():
            raise NotInSource(f"bundled catalog: no {location}")
        return FetchedConfig(model_id, self.name, location, _parse(resource.read_bytes(), location))


def offline_reason() -> str | None:
    """Which variable put this process offline (``HF_HUB_OFFLINE=1``, ...), if any."""
    for variable in OFFLINE_ENVS:
        value = os.environ.get(variable, "")
        if value.strip().lower() in _TRUE:
            return f"{variable}={value}"
    return None


class HubSource:
    """``<endpoint>/<org>/<name>/resolve/<revision>/config.json`` over HTTP(S).

    The endpoint is the argument, else ``FOUNDRYFLOW_HF_ENDPOINT``, else ``HF_ENDPOINT``, else
    huggingface.co; offline mode is checked at each fetch. Timeouts are short: onboarding
    runs inside a pipeline step, and an unreachable Hub should fall through to the next
    source (or fail the step) within seconds, not hang it.
    """

    name = "hub"

    def __init__(
        self,
        token: str | SecretStr | None = None,
        *,
        endpoint: str | None = None,
        revision: str = "main",
        timeout: float = 5.0,
    ) -> None:
        self._token = SecretStr(token) if isinstance(token, str) else token
        self._endpoint = endpoint
        self._revision = revision
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 3.0))

    def __repr__(self) -> str:
        token = "'**********'" if self._token else "None"
        return f"HubSource(token={token}, endpoint={self.endpoint()!r})"

    def endpoint(self) -> str:
        endpoint = self._endpoint or next(
            (os.environ[var] for var in HUB_ENDPOINT_ENVS if os.environ.get(var, "").strip()),
            DEFAULT_HUB_ENDPOINT,
        )
        endpoint = endpoint.strip().rstrip("/")
        if not endpoint.startswith(("https://", "http://")):
            raise ModelConfigError(f"Hub endpoint {endpoint!r} is not an http(s) URL")
        return endpoint

    def fetch(self, model_id: str) -> FetchedConfig:
        split_model_id(model_id)
        if reason := offline_reason():
            raise NotInSource(f"Hugging Face Hub: skipped, offline ({reason})")
        url = f"{self.endpoint()}/{model_id}/resolve/{self._revision}/config.json"
        headers = {"Accept": "application/json", "User-Agent": "foundryflow"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        log.debug("fetching %s", url)
        try:
            with (
                httpx.Client(timeout=self._timeout, follow_redirects=True) as client,
                client.stream("GET", url, headers=headers) as response,
            ):
                if response.status_code != httpx.codes.OK:
                    raise NotInSource(f"Hugging Face Hub: {url}: {self._refusal(response)}")
                raw = _read_capped(response, url)
        except httpx.HTTPError as exc:
            # ``from None``: the httpx exception's request carries the Authorization header.
            raise NotInSource(f"Hugging Face Hub: {url}: {type(exc).__name__}") from None
        return FetchedConfig(model_id, self.name, url, _parse(raw, url))

    def _refusal(self, response: httpx.Response) -> str:
        status = response.status_code
        if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            access = "the token given has no access" if self._token else "no token was given"
            return f"HTTP {status}, a gated or private model ({access})"
        if status == httpx.codes.NOT_FOUND:
            return "HTTP 404, no such model, revision or file"
        return f"HTTP {status}"


def _read_capped(response: httpx.Response, url: str) -> bytes:
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_CONFIG_BYTES:
            raise InvalidModelConfigError(f"{url} is larger than {MAX_CONFIG_BYTES} bytes")
    return bytes(body)


def source_policy(policy: str | Sequence[str] | None = None) -> tuple[SourceName, ...]:
    """The order of sources: ``policy``, else ``FOUNDRYFLOW_MODEL_CONFIG_SOURCES``, else
    ``local,bundled,hub``; a string is comma-separated."""
    if policy is None:
        policy = os.environ.get(POLICY_ENV, "").strip() or DEFAULT_POLICY
    names = [p.strip() for p in policy.split(",")] if isinstance(policy, str) else list(policy)
    known = get_args(SourceName)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ModelConfigError(
            f"invalid config source policy {policy!r}: use a non-empty list of {', '.join(known)}"
        )
    return tuple(cast(SourceName, name) for name in names)


def resolve_sources(
    sources: str | Sequence[str | ConfigSource] | None = None,
    *,
    token: str | SecretStr | None = None,
) -> list[ConfigSource]:
    """Source objects from a policy: names are built (the Hub with ``token``), objects kept,
    so a caller can mix ``"bundled"`` with ``LocalDirectorySource(path)``."""
    if sources is None or isinstance(sources, str):
        sources = list(source_policy(sources))
    built: list[ConfigSource] = []
    for source in sources:
        if not isinstance(source, str):
            built.append(source)
            continue
        (name,) = source_policy([source])
        if name == "local":
            built.append(LocalDirectorySource())
        elif name == "bundled":
            built.append(BundledSource())
        else:
            built.append(HubSource(token))
    return built


def fetch_config(model_id: str, sources: Sequence[ConfigSource]) -> FetchedConfig:
    """The first source's answer for ``model_id``; every miss is listed if none has it."""
    split_model_id(model_id)
    looked: list[str] = []
    for source in sources:
        try:
            fetched = source.fetch(model_id)
        except NotInSource as miss:
            looked.append(str(miss))
            continue
        log.info("config.json of %s from %s (%s)", model_id, source.name, fetched.location)
        return fetched
    raise ModelConfigNotFoundError(model_id, looked)
