"""``ops.backup_postgres``: the daily ``pg_dump -Fc`` with retention and a restore test."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.config import get_settings
from foundryflow.ops.backup import backup, verify_restore
from foundryflow.store.db import database_url


class BackupParams(ActionParams):
    directory: str | None = Field(
        default=None, description="Where dumps go; default <FOUNDRYFLOW_HOME>/backups."
    )
    retention_days: int = Field(default=7, ge=1, description="Dumps taken longer ago are deleted")
    keep_min: int = Field(default=3, ge=1, description="The newest this many are always kept.")
    verify: bool = Field(default=True, description="Restore the dump into a scratch database.")


class BackupOutputs(ActionOutputs):
    path: str
    bytes: int
    sha256: str
    deleted: list[str]
    restore_ok: bool | None
    """None when ``verify`` was off."""
    tables_checked: int


class BackupPostgres(Action[BackupParams, BackupOutputs]):
    meta = ActionMeta(
        name="ops.backup_postgres",
        description="Dump the platform database (pg_dump custom format, checksum and row "
        "counts of the same snapshot), delete dumps past retention, and prove the new dump "
        "restores: the step fails if the restored copy does not match.",
        idempotent=True,
    )
    Params = BackupParams
    Outputs = BackupOutputs

    def run(self, ctx: ActionContext, params: BackupParams) -> BackupOutputs:
        url = database_url()
        directory = Path(params.directory) if params.directory else get_settings().home / "backups"
        result = backup(url, directory, params.retention_days, params.keep_min)
        ctx.log.info(
            "backup %s: %d bytes, sha256 %s; deleted %d old dump(s)",
            result.path,
            result.bytes,
            result.sha256,
            len(result.deleted),
        )
        restore_ok: bool | None = None
        tables_checked = 0
        if params.verify:
            check = verify_restore(result.path, url)
            if not check.ok:
                raise RuntimeError(f"restore check failed: {check.message}")
            ctx.log.info("restore check: %s", check.message)
            restore_ok, tables_checked = True, check.tables_checked
        return BackupOutputs(
            path=str(result.path),
            bytes=result.bytes,
            sha256=result.sha256,
            deleted=result.deleted,
            restore_ok=restore_ok,
            tables_checked=tables_checked,
        )
