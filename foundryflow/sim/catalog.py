"""Models and hardware by the names people type, from the database or from the seed.

With FOUNDRYFLOW_DATABASE_URL set, the catalog tables are read. Without it, the reference
data of :mod:`foundryflow.benchmark.seed` is used as it stands — the very figures
``seed_catalog`` writes, as transient rows — so ``foundryflow simulate`` works with no
database at all.

A model is named by its URI (``meta-llama/Llama-3.1-8B-Instruct``) or by its short name,
the part after the last ``/`` (``Llama-3.1-8B-Instruct``); case does not matter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from foundryflow.benchmark import seed
from foundryflow.config import get_settings
from foundryflow.sim.specs import HardwareSpec, ModelSpec
from foundryflow.store.catalog import HardwareConfig, Model, ModelVersion
from foundryflow.store.db import session_scope

DEFAULT_DTYPE = "bf16"
"""For a model with no registered version: the dtype models are published in."""


class CatalogLookupError(LookupError):
    """A name that matches nothing, or more than one thing; the message lists the choices."""


@dataclass(frozen=True)
class Catalog:
    source: Literal["database", "seed"]
    models: Mapping[str, Model]
    """By URI."""
    dtypes: Mapping[str, tuple[str, ...]]
    """URI → dtypes of its registered versions."""
    hardware: Mapping[str, HardwareConfig]
    """By name."""

    def hardware_spec(self, name: str) -> HardwareSpec:
        row = self.hardware.get(name) or next(
            (h for key, h in self.hardware.items() if key.lower() == name.lower()), None
        )
        if row is None:
            known = ", ".join(sorted(self.hardware)) or "none"
            raise CatalogLookupError(f"unknown hardware {name!r}; known: {known}")
        return HardwareSpec.from_catalog(row)

    def model_uri(self, name: str) -> str:
        """The URI ``name`` stands for: itself, or the one model whose short name it is."""
        if name in self.models:
            return name
        wanted = name.lower()
        matches = [uri for uri in self.models if wanted in (uri.lower(), _short(uri).lower())]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise CatalogLookupError(f"model {name!r} is ambiguous: {', '.join(sorted(matches))}")
        known = ", ".join(sorted(self.models)) or "none"
        raise CatalogLookupError(
            f"unknown model {name!r}; known (URI, or the part after the last /): {known}"
        )

    def model_spec(self, name: str, dtype: str | None = None) -> ModelSpec:
        """The named model in ``dtype``; by default the dtype of its registered versions."""
        uri = self.model_uri(name)
        if dtype is None:
            dtypes = self.dtypes.get(uri, ())
            if len(dtypes) > 1:
                raise CatalogLookupError(
                    f"model {uri} has versions in {', '.join(dtypes)}: choose one dtype"
                )
            dtype = dtypes[0] if dtypes else DEFAULT_DTYPE
        return ModelSpec.from_catalog(self.models[uri], dtype)


def _short(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def load_catalog() -> Catalog:
    """The database's catalog when FOUNDRYFLOW_DATABASE_URL is set, else the seed's."""
    if get_settings().database_url:
        return _from_database()
    return _from_seed()


def _from_database() -> Catalog:
    with session_scope() as session:
        models = {m.uri: m for m in session.scalars(select(Model))}
        hardware = {h.name: h for h in session.scalars(select(HardwareConfig))}
        versions = session.execute(
            select(Model.uri, ModelVersion.dtype)
            .join(ModelVersion.model)
            .distinct()
            .order_by(Model.uri, ModelVersion.dtype)
        ).all()
    dtypes: dict[str, tuple[str, ...]] = {}
    for uri, dtype in versions:
        dtypes[uri] = (*dtypes.get(uri, ()), dtype)
    return Catalog("database", models, dtypes, hardware)


def _from_seed() -> Catalog:
    """As ``seed_catalog`` writes it: every model with one bf16 version."""
    models = {row["uri"]: Model(**row) for row in seed.MODELS}
    hardware = {row["name"]: HardwareConfig(**row) for row in seed.HARDWARE}
    return Catalog("seed", models, dict.fromkeys(models, ("bf16",)), hardware)
