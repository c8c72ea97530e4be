"""``guardrail.validate_credential``: the model-hub credential exists and looks usable.

Credentials are Airflow connections; our tables, step params and outputs only ever hold the
connection id. The secret is the connection's password, or a ``token`` in its extra (as the
Hugging Face provider stores it); it is read here and by ``batch_onboard_models`` and never
logged, returned or put in a message. Airflow resolves the id the same way from a task and
from a plain process (Argo pod, CLI): ``AIRFLOW_CONN_<ID>`` variables (JSON or URI), then the
configured secrets backend, then its database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import Field, SecretStr

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.store.guardrail import CONN_ID_PATTERN, ProviderType

HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{34}")
"""The shape of a Hugging Face user access token."""
_HUGGINGFACE_NAMES = frozenset({"huggingface", "hugging_face", "huggingface_hub", "hf"})


class CredentialError(ValueError):
    """The connection is missing or unusable; the message names it, never its secret."""


@dataclass(frozen=True)
class Credential:
    conn_id: str
    provider_type: str
    secret: SecretStr

    @property
    def is_huggingface(self) -> bool:
        return self.provider_type == ProviderType.HUGGINGFACE.value


def _provider_type(conn_type: str | None, extra: dict[str, Any]) -> str:
    """``provider_type`` from the extra if set, else the connection type; Hugging Face's
    spellings (``huggingface``, ``hugging_face``, ``hf``...) all read as ``huggingface``."""
    declared = extra.get("provider_type") or conn_type or ""
    name = str(declared).strip().lower().replace("-", "_")
    return ProviderType.HUGGINGFACE.value if name in _HUGGINGFACE_NAMES else name or "unknown"


def read_credential(conn_id: str) -> Credential:
    """The connection's provider type and secret; :class:`CredentialError` if it is missing,
    holds no secret, or holds a Hugging Face token that is not well-formed."""
    # Imported here: Airflow takes seconds to import and only these two actions need it.
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise CredentialError(
            f"Airflow connection {conn_id!r} does not exist: create it (Admin > Connections, "
            f"or the AIRFLOW_CONN_{conn_id.upper()} environment variable)"
        ) from None
    extra = connection.extra_dejson
    provider = _provider_type(connection.conn_type, extra)
    secret = connection.password or extra.get("token")
    if not isinstance(secret, str) or not secret.strip():
        raise CredentialError(
            f"Airflow connection {conn_id!r} holds no secret: set its password, or a 'token' "
            "in its extra"
        )
    if provider == ProviderType.HUGGINGFACE.value and not HF_TOKEN.fullmatch(secret):
        raise CredentialError(
            f"the secret of Airflow connection {conn_id!r} is not a well-formed Hugging Face "
            "token ('hf_' followed by 34 letters and digits, no spaces)"
        )
    return Credential(conn_id=conn_id, provider_type=provider, secret=SecretStr(secret))


class ValidateCredentialParams(ActionParams):
    credential_id: str = Field(pattern=CONN_ID_PATTERN, description="Airflow connection id.")


class ValidateCredentialOutputs(ActionOutputs):
    valid: bool
    provider_type: str


class ValidateCredential(Action[ValidateCredentialParams, ValidateCredentialOutputs]):
    meta = ActionMeta(
        name="guardrail.validate_credential",
        description="Check that the credential's Airflow connection exists and holds a "
        "non-empty secret (a well-formed token for Hugging Face); the secret never leaves it.",
        idempotent=True,
    )
    Params = ValidateCredentialParams
    Outputs = ValidateCredentialOutputs

    def run(
        self, ctx: ActionContext, params: ValidateCredentialParams
    ) -> ValidateCredentialOutputs:
        credential = read_credential(params.credential_id)
        ctx.log.info(
            "connection %s holds a %s credential", credential.conn_id, credential.provider_type
        )
        return ValidateCredentialOutputs(valid=True, provider_type=credential.provider_type)
