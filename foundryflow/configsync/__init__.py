"""Guardrail configs for gateways: the document (:mod:`.model`) and its versioned, atomic
home in Redis (:mod:`.redis_store`). Used by the ``build_config``, ``sync_redis`` and
``rollback`` guardrail actions.
"""

from foundryflow.configsync.model import (
    GuardrailConfig,
    ModelEndpoint,
    ProbeConfig,
    RuleConfig,
    StoredConfig,
)
from foundryflow.configsync.redis_store import (
    ConfigWriteConflict,
    GuardrailConfigStore,
    WrittenConfig,
)

__all__ = [
    "ConfigWriteConflict",
    "GuardrailConfig",
    "GuardrailConfigStore",
    "ModelEndpoint",
    "ProbeConfig",
    "RuleConfig",
    "StoredConfig",
    "WrittenConfig",
]
