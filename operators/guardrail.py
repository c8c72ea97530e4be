"""Named guardrail operators for hand-written DAGs: no pipeline spec, no execution row.

Each is a thin adapter over the library function the guardrail pipeline actions call, so a
DAG author and a generated pipeline share one implementation (``HelmInstallOperator``, over
the use cases' ``install_chart``, is in :mod:`operators.helm`):

- :class:`OnboardModelsOperator`: :func:`foundryflow.registry.onboard.onboard_models_all_or_nothing`
- :class:`SimulateOperator`: the catalog lookup and simulator of ``foundryflow simulate``
- :class:`RedisConfigSyncOperator`: :meth:`foundryflow.configsync.GuardrailConfigStore.write`

Input a user can get wrong (unknown names, hostile release names, invalid configs) fails the
task with :class:`~airflow.sdk.exceptions.AirflowFailException` (no retry, nothing written);
infrastructure errors propagate so the task's own ``retries`` apply. foundryflow is imported
in ``execute``, not at module level: the catalog's ORM imports would slow DAG parsing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from foundryflow.problems import describe

if TYPE_CHECKING:
    import redis

REDIS_TIMEOUT_SECONDS = 10.0


def _whole_number(name: str, value: Any) -> int:
    """A templated numeric field renders to a string; accept ``"8"`` but not ``"8.5"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise AirflowFailException(f"{name} must be a whole number, got {value!r}")


class OnboardModelsOperator(BaseOperator):
    """Record models' architectures in the model registry, all of them or none.

    Each model's ``config.json`` comes from a local directory, the configs bundled with
    foundryflow or the Hugging Face Hub. The Hub token is the secret of the Airflow
    connection ``credential_conn_id`` (sent to the Hub only when it is a Hugging Face
    connection); it is never logged nor returned. Already registered models are reported,
    not fetched again.

    :param model_uris: Hub ids (``org/name``) of the models to onboard. (templated)
    :param credential_conn_id: Airflow connection holding the Hub token; None: anonymous
        access (public models, or bundled configs offline). (templated)
    :return: the onboarded models, one JSON object each (``uri``, ``model_id``,
        ``model_version_id``, ``created``, ``dtype``, ``source``).
    """

    template_fields: Sequence[str] = ("model_uris", "credential_conn_id")
    ui_color = "#dcfce7"

    def __init__(
        self,
        *,
        model_uris: list[str],
        credential_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_uris = model_uris
        self.credential_conn_id = credential_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from foundryflow.actions.guardrail.validate_credential import (
            CredentialError,
            read_credential,
        )
        from foundryflow.registry.onboard import OnboardingError, onboard_models_all_or_nothing
        from foundryflow.store.db import session_scope

        uris = self.model_uris
        if (
            not isinstance(uris, list)
            or not uris
            or not all(isinstance(uri, str) and uri.strip() for uri in uris)
        ):
            raise AirflowFailException(
                f"model_uris must be a non-empty list of model ids (org/name), got {uris!r}"
            )
        token = None
        if self.credential_conn_id is not None:
            try:
                credential = read_credential(self.credential_conn_id)
            except CredentialError as exc:
                raise AirflowFailException(str(exc)) from None
            token = credential.secret if credential.is_huggingface else None
            self.log.info(
                "using the %s credential of connection %s",
                credential.provider_type,
                credential.conn_id,
            )
        try:
            with session_scope() as session:
                result = onboard_models_all_or_nothing(session, uris, token=token)
        except OnboardingError as exc:
            raise AirflowFailException(str(exc)) from None
        onboarded = [model.model_dump(mode="json") for model in result.onboarded]
        self.log.info(
            "onboarded %s",
            ", ".join(f"{m['uri']} ({'new' if m['created'] else 'known'})" for m in onboarded),
        )
        return onboarded


class SimulateOperator(BaseOperator):
    """Predict one replica of a model on one hardware option for one workload.

    Names are looked up in the catalog as ``foundryflow simulate`` does (the database when
    ``FOUNDRYFLOW_DATABASE_URL`` is set, else the seed data); a model may be named by its
    URI or the part after the last ``/``.

    :param model: Model URI or short name, e.g. ``meta-llama/Llama-Guard-3-1B``. (templated)
    :param hardware: Hardware config name, e.g. ``l4-24gb-x1``. (templated)
    :param concurrency: Requests one replica holds at once. (templated)
    :param input_tokens: Prompt tokens per request. (templated)
    :param output_tokens: Generated tokens per request. (templated)
    :param tp: Tensor-parallel degree; None: the smallest that fits in memory. (templated)
    :param dtype: Weight dtype (bf16, fp8, ...); None: the dtype of the model's registered
        version. (templated)
    :return: ``model``, ``dtype``, ``hardware``, ``catalog`` and the prediction: ``tp``,
        ``ttft_ms``, ``tpot_ms``, ``e2e_ms``, ``output_tokens_per_s``, ``requests_per_s``,
        ``memory_gb`` (per GPU), ``memory_budget_gb``, ``fits`` and the memory breakdown.
    """

    template_fields: Sequence[str] = (
        "model",
        "hardware",
        "concurrency",
        "input_tokens",
        "output_tokens",
        "tp",
        "dtype",
    )
    ui_color = "#fef9c3"

    def __init__(
        self,
        *,
        model: str,
        hardware: str,
        concurrency: int,
        input_tokens: int,
        output_tokens: int,
        tp: int | None = None,
        dtype: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.hardware = hardware
        self.concurrency = concurrency
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.tp = tp
        self.dtype = dtype

    def execute(self, context: Context) -> dict[str, Any]:
        from pydantic import ValidationError

        from foundryflow.sim.catalog import CatalogLookupError, load_catalog
        from foundryflow.sim.model import SimulationError, simulate
        from foundryflow.sim.recommend import smallest_fitting
        from foundryflow.sim.specs import Workload

        tp = None if self.tp in (None, "") else _whole_number("tp", self.tp)
        try:
            workload = Workload(
                concurrency=_whole_number("concurrency", self.concurrency),
                input_tokens=_whole_number("input_tokens", self.input_tokens),
                output_tokens=_whole_number("output_tokens", self.output_tokens),
            )
            catalog = load_catalog()
            hardware_spec = catalog.hardware_spec(self.hardware)
            model_spec = catalog.model_spec(self.model, self.dtype or None)
            if tp is None:
                prediction = smallest_fitting(model_spec, hardware_spec, workload)
            else:
                prediction = simulate(model_spec, hardware_spec, workload, tp)
        except ValidationError as exc:
            raise AirflowFailException(f"invalid workload: {describe(exc)}") from None
        except (CatalogLookupError, SimulationError) as exc:
            raise AirflowFailException(str(exc)) from None
        result: dict[str, Any] = {
            "model": model_spec.name,
            "dtype": model_spec.dtype,
            "hardware": hardware_spec.name,
            "catalog": catalog.source,
            **prediction.as_dict(),
        }
        self.log.info(
            "%s (%s) on %s, tp=%d: TTFT %.1f ms, TPOT %.2f ms, e2e %.1f ms, "
            "%.1f tokens/s, %.1f of %.1f GB per GPU (%s)",
            model_spec.name,
            model_spec.dtype,
            hardware_spec.name,
            prediction.tp,
            prediction.ttft_ms,
            prediction.tpot_ms,
            prediction.e2e_ms,
            prediction.output_tokens_per_s,
            prediction.memory_gb,
            prediction.memory_budget_gb,
            "fits" if prediction.fits else "DOES NOT FIT",
        )
        return result


def _redis_from_connection(conn_id: str) -> redis.Redis:
    """A client for the Airflow connection ``conn_id`` (conn type ``redis``), read as the
    Redis provider's hook reads it: host, port, login, password, extra ``db`` and ``ssl``."""
    import redis
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    extra = connection.extra_dejson
    if not connection.host:
        raise AirflowFailException(f"Airflow connection {conn_id!r} has no host")
    db = extra.get("db", connection.schema or 0)
    if not str(db).isdigit():
        raise AirflowFailException(f"Airflow connection {conn_id!r}: db {db!r} is not a number")
    ssl = str(extra.get("ssl", "")).lower() in {"1", "true", "yes"}
    auth = ""
    if connection.login or connection.password:
        login, password = connection.login or "", connection.password or ""
        auth = f"{quote(login, safe='')}:{quote(password, safe='')}@"
    host = f"[{connection.host}]" if ":" in connection.host else connection.host
    url = f"{'rediss' if ssl else 'redis'}://{auth}{host}:{connection.port or 6379}/{int(db)}"
    return redis.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )


class RedisConfigSyncOperator(BaseOperator):
    """Publish a guardrail profile's config to Redis, atomically and versioned.

    The config is validated (:class:`foundryflow.configsync.GuardrailConfig`) before Redis is
    touched; writing the config that is already current changes nothing and returns its
    version, so the task is safe to retry. An entry the store cannot read is not overwritten.

    :param profile_id: The guardrail profile's id (a UUID); must match ``config``. (templated)
    :param config: The config document, as ``guardrail.build_config`` outputs it. (templated)
    :param redis_conn_id: Airflow Redis connection; None: ``FOUNDRYFLOW_REDIS_URL``.
        (templated)
    :return: ``{"key": ..., "version": ..., "sha256": ...}``.
    """

    template_fields: Sequence[str] = ("profile_id", "config", "redis_conn_id")
    template_fields_renderers = {"config": "json"}
    ui_color = "#fee2e2"

    def __init__(
        self,
        *,
        profile_id: str,
        config: dict[str, Any],
        redis_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.profile_id = profile_id
        self.config = config
        self.redis_conn_id = redis_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from pydantic import ValidationError

        from foundryflow.configsync import GuardrailConfig, GuardrailConfigStore
        from foundryflow.configsync.redis_store import profile_uuid
        from foundryflow.store.redis_client import RedisNotConfiguredError, get_redis

        try:
            profile = profile_uuid(str(self.profile_id))
            document = GuardrailConfig.model_validate(self.config)
        except ValidationError as exc:
            raise AirflowFailException(f"invalid guardrail config: {describe(exc)}") from None
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        if document.profile_id != profile:
            raise AirflowFailException(f"config is of profile {document.profile_id}, not {profile}")

        own_client = None
        if self.redis_conn_id is not None:
            own_client = _redis_from_connection(self.redis_conn_id)
        try:
            client = own_client or get_redis()
        except RedisNotConfiguredError:
            raise AirflowFailException(
                "no redis_conn_id and FOUNDRYFLOW_REDIS_URL is not set: "
                "guardrail configs live in Redis"
            ) from None
        store = GuardrailConfigStore(client)
        try:
            written = store.write(profile, document)
        except ValidationError as exc:  # the config was validated: only the stored entry fails
            raise AirflowFailException(
                f"{store.key(profile)} holds an entry that is not a valid stored config "
                f"(damaged or edited by hand: {exc.errors()[0]['msg']}); refusing to overwrite "
                "it without knowing its version: inspect it and delete it"
            ) from None
        finally:
            if own_client is not None:  # the shared client stays open for the process
                own_client.close()
        self.log.info(
            "%s: version %d (%s)",
            written.key,
            written.version,
            "written" if written.changed else "unchanged",
        )
        return {"key": written.key, "version": written.version, "sha256": written.sha256}
