"""Process-wide settings, read once from ``FOUNDRYFLOW_*`` environment variables.

Every component (CLI, Airflow tasks, Argo pods) reads configuration from the same
environment so that a step behaves identically whichever engine launched it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The repository root is the import root (see DESIGN.md): DAG bundle and Argo image ship it."""


class Settings(BaseSettings):
    """Configuration of one foundryflow process.

    ``database_url`` and ``redis_url`` left unset mean "start the embedded throwaway
    services" for the commands that own a platform (``foundryflow up``, ``run``); library
    code that needs a URL and finds none raises a clear error instead of guessing.
    """

    model_config = SettingsConfigDict(env_prefix="FOUNDRYFLOW_", extra="ignore")

    database_url: str | None = Field(default=None, description="SQLAlchemy URL of PostgreSQL.")
    redis_url: str | None = Field(default=None, description="redis:// URL for events and configs.")
    home: Path = Field(
        default=REPO_ROOT / ".foundryflow",
        description="Project-local state: embedded services, Airflow home, logs.",
    )
    pipelines_path: list[Path] = Field(
        default_factory=lambda: [REPO_ROOT / "pipelines"],
        description="Folders searched for pipeline specs (JSON list in the environment).",
    )
    argo_image: str = Field(default="ghcr.io/foundryflow/foundryflow:0.1.0")
    argo_namespace: str = Field(default="foundryflow")
    argo_service_account: str = Field(default="foundryflow-workflow")
    events_stream: str = Field(
        default="foundryflow:events", description="Redis Stream every event is appended to."
    )
    events_maxlen: int = Field(default=100_000, ge=1000)
    deployment_max_replicas: int = Field(
        default=100, ge=1, description="Most runners one pipeline deployment may have."
    )
    deployment_max_cpu: str = Field(default="16", description="Most cpu of one runner pod.")
    deployment_max_memory: str = Field(default="64Gi", description="Most memory of one runner.")
    deployment_retention_days: int = Field(
        default=30, ge=1, description="Deleted pipeline deployments are purged after this."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
