"""Demo guardrail data for ``foundryflow db seed --demo``: providers, probes, rules and two
local clusters built from the hardware catalog.

The model-based rules name real guard models. Llama Guard 3 8B is in the reference
catalog, so its rules come out "onboarded" and get linked; Prompt Guard 86M and Granite
Guardian 3.1 2B are deliberately not, so a demo run exercises onboarding (step 5).
Credentials are Airflow connection ids only; creating those connections is the user's
job, and nothing here knows a secret.

Everything is upserted by natural key, so seeding again changes nothing, and a model id
that onboarding linked to a rule is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid5

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from foundryflow.benchmark.seed import seed_catalog
from foundryflow.store.catalog import HardwareConfig, Model
from foundryflow.store.guardrail import (
    Cluster,
    ClusterBackendName,
    ClusterNode,
    GuardrailProbe,
    GuardrailProvider,
    GuardrailRule,
    GuardType,
    ProviderType,
)

LLAMA_GUARD = "meta-llama/Llama-Guard-3-8B"
PROMPT_GUARD = "meta-llama/Prompt-Guard-86M"
GRANITE_GUARDIAN = "ibm-granite/granite-guardian-3.1-2b"

BOTH = [GuardType.INPUT.value, GuardType.OUTPUT.value]
INPUT = [GuardType.INPUT.value]
OUTPUT = [GuardType.OUTPUT.value]
DEFAULT_SEVERITY = 0.5
"""The middle of the 0..1 scale: a demo default a profile is expected to override."""


def _rule(
    name: str, description: str, guard_types: list[str], model_uri: str | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "guard_types": guard_types,
        "severity_threshold": DEFAULT_SEVERITY,
        "model_uri": model_uri,
        "model_provider_type": None if model_uri is None else ProviderType.HUGGINGFACE,
    }


PROVIDERS: list[dict[str, Any]] = [
    {
        "name": "huggingface-guard-models",
        "type": ProviderType.HUGGINGFACE,
        "description": "Open guard models from the Hugging Face Hub, served on our clusters.",
        "credential_conn_id": "foundryflow_huggingface",
        "probes": {
            "harmful-content": (
                "Llama Guard 3 hazard categories (MLCommons taxonomy).",
                [
                    _rule("violent-crimes", "S1: violent crimes", BOTH, LLAMA_GUARD),
                    _rule("non-violent-crimes", "S2: non-violent crimes", BOTH, LLAMA_GUARD),
                    _rule("hate", "S10: hate", BOTH, LLAMA_GUARD),
                    _rule("self-harm", "S11: suicide and self-harm", BOTH, LLAMA_GUARD),
                    _rule("sexual-content", "S12: sexual content", BOTH, LLAMA_GUARD),
                ],
            ),
            "prompt-injection": (
                "Attempts to override the system prompt or smuggle instructions in.",
                [
                    _rule("jailbreak", "Prompt Guard JAILBREAK label", INPUT, PROMPT_GUARD),
                    _rule("injection", "Prompt Guard INJECTION label", INPUT, PROMPT_GUARD),
                    _rule(
                        "ignore-previous-instructions",
                        "Pattern: 'ignore (all) previous instructions' and variants",
                        INPUT,
                    ),
                ],
            ),
            "risk-detection": (
                "Granite Guardian risk definitions, including RAG groundedness.",
                [
                    _rule("social-bias", "Granite Guardian social_bias", BOTH, GRANITE_GUARDIAN),
                    _rule("profanity", "Granite Guardian profanity", BOTH, GRANITE_GUARDIAN),
                    _rule(
                        "groundedness", "Granite Guardian groundedness", OUTPUT, GRANITE_GUARDIAN
                    ),
                ],
            ),
            "pii": (
                "Personal data that must not leave or enter the application.",
                [
                    _rule("email-address", "Pattern: RFC 5322 e-mail addresses", BOTH),
                    _rule("credit-card-number", "Pattern: Luhn-valid card numbers", BOTH),
                ],
            ),
        },
    },
    {
        "name": "openai-moderation",
        "type": ProviderType.OPENAI,
        "description": "OpenAI's moderation endpoint; nothing to deploy.",
        "credential_conn_id": "foundryflow_openai",
        "probes": {
            "moderation": (
                "OpenAI moderation categories.",
                [
                    _rule("harassment", "harassment, harassment/threatening", BOTH),
                    _rule("violence", "violence, violence/graphic", BOTH),
                ],
            ),
        },
    },
    {
        "name": "azure-content-safety",
        "type": ProviderType.AZURE,
        "description": "Azure AI Content Safety; nothing to deploy.",
        "credential_conn_id": "foundryflow_azure_content_safety",
        "probes": {
            "content-safety": (
                "Azure Content Safety harm categories.",
                [
                    _rule("hate", "Hate and fairness", BOTH),
                    _rule("self-harm", "Self-harm", BOTH),
                ],
            ),
        },
    },
]

CLUSTERS: dict[str, list[tuple[str, str, int]]] = {
    "demo-h100": [("h100-x8", "h100-sxm-80gb-x8", 2), ("cpu", "xeon-8480plus-2s", 2)],
    "demo-l40s": [("l40s-x4", "l40s-48gb-x4", 2), ("l4-x1", "l4-24gb-x1", 4)],
}
"""Cluster name -> node pools (name, hardware catalog name, machine count)."""


DEMO_NAMESPACE = UUID("0f6b1d4e-3c55-5e2a-9d1b-7a0c2f4e8b13")


def demo_id(*path: str) -> UUID:
    """The id a demo row gets in a fresh database: derived from its names, so an example
    run configuration (``pipelines/examples/``) can name probes and rules by id."""
    return uuid5(DEMO_NAMESPACE, "/".join(path))


@dataclass(frozen=True)
class DemoCounts:
    providers: int
    probes: int
    rules: int
    clusters: int
    nodes: int


def _upsert(
    session: Session, table: Any, rows: list[dict[str, Any]], keys: list[str], **computed: Any
) -> dict[tuple[Any, ...], UUID]:
    """Insert or update by ``keys``; returns natural key -> id. ``computed`` overrides what
    an update sets for a column (default: the new value)."""
    statement = insert(table).values(rows)
    updates = {
        column: statement.excluded[column]
        for column in rows[0]
        if column not in keys and column != "id"  # an existing row keeps its id
    }
    updates.update(computed)
    statement = statement.on_conflict_do_update(index_elements=keys, set_=updates)
    columns = [table.__table__.c[key] for key in keys]
    returned = session.execute(statement.returning(table.id, *columns))
    return {tuple(row[1:]): row[0] for row in returned}


def seed_demo(session: Session) -> DemoCounts:
    """Upsert the demo data (and the reference catalog it builds on)."""
    seed_catalog(session)
    providers = _upsert(
        session,
        GuardrailProvider,
        [
            {"id": demo_id(p["name"]), **{k: v for k, v in p.items() if k != "probes"}}
            for p in PROVIDERS
        ],
        ["name"],
    )
    probe_rows = [
        {
            "id": demo_id(p["name"], name),
            "provider_id": providers[(p["name"],)],
            "name": name,
            "description": description,
        }
        for p in PROVIDERS
        for name, (description, _) in p["probes"].items()
    ]
    probes = _upsert(session, GuardrailProbe, probe_rows, ["provider_id", "name"])

    every_rule = [r for p in PROVIDERS for _, rules in p["probes"].values() for r in rules]
    uris = {rule["model_uri"] for rule in every_rule if rule["model_uri"] is not None}
    registry = dict(session.execute(select(Model.uri, Model.id).where(Model.uri.in_(uris))).all())
    rule_rows = [
        {
            "id": demo_id(p["name"], probe_name, rule["name"]),
            **rule,
            "probe_id": probes[(providers[(p["name"],)], probe_name)],
            "model_id": registry.get(rule["model_uri"]),
        }
        for p in PROVIDERS
        for probe_name, (_, rules) in p["probes"].items()
        for rule in rules
    ]
    # a model onboarded since the last seed stays linked
    keep_linked = func.coalesce(GuardrailRule.model_id, insert(GuardrailRule).excluded.model_id)
    _upsert(session, GuardrailRule, rule_rows, ["probe_id", "name"], model_id=keep_linked)

    clusters = _upsert(
        session,
        Cluster,
        [
            {"id": demo_id("cluster", name), "name": name, "backend": ClusterBackendName.LOCAL}
            for name in CLUSTERS
        ],
        ["name"],
    )
    hardware = dict(session.execute(select(HardwareConfig.name, HardwareConfig.id)).all())
    node_rows = [
        {
            "cluster_id": clusters[(cluster,)],
            "name": name,
            "hardware_config_id": hardware[hardware_name],
            "count": count,
        }
        for cluster, pools in CLUSTERS.items()
        for name, hardware_name, count in pools
    ]
    _upsert(session, ClusterNode, node_rows, ["cluster_id", "name"])
    return DemoCounts(
        providers=len(providers),
        probes=len(probes),
        rules=len(rule_rows),
        clusters=len(clusters),
        nodes=len(node_rows),
    )
