"""The model registry: config.json sources, architecture parsing, onboarding in PostgreSQL.

The Hub is a local ``http.server`` laid out like huggingface.co (``FOUNDRYFLOW_HF_ENDPOINT``
points at it); every other test runs offline, so nothing here touches the internet.
Onboarding tests use uris unique to the test and delete their rows afterwards.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from foundryflow.benchmark import seed
from foundryflow.registry import onboard as onboard_module
from foundryflow.registry.architecture import ArchitectureError, parse_config
from foundryflow.registry.config_sources import (
    BundledSource,
    ConfigSource,
    FetchedConfig,
    HubSource,
    InvalidModelConfigError,
    InvalidModelIdError,
    LocalDirectorySource,
    ModelConfigError,
    ModelConfigNotFoundError,
    NotInSource,
    fetch_config,
    resolve_sources,
    source_policy,
    split_model_id,
)
from foundryflow.registry.onboard import (
    OnboardingError,
    onboard_models,
    onboard_models_all_or_nothing,
)
from foundryflow.store.catalog import Model, ModelVersion
from foundryflow.store.db import session_scope

ENV = (
    "FOUNDRYFLOW_MODEL_CONFIG_DIR",
    "FOUNDRYFLOW_MODEL_CONFIG_SOURCES",
    "FOUNDRYFLOW_HF_ENDPOINT",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "FOUNDRYFLOW_OFFLINE",
)
TOKEN = "hf_" + "S3cr3tT0kenForTheFakeHub0123456789"
BUNDLED = resources.files("foundryflow.registry").joinpath("configs")

# Published totals (model cards / safetensors metadata), layers, KV heads, context, dtype.
PUBLISHED: dict[str, tuple[float, int, int, int, str]] = {
    "meta-llama/Llama-Guard-3-8B": (8.03e9, 32, 8, 131072, "bf16"),
    "meta-llama/Llama-Guard-3-1B": (1.50e9, 16, 8, 131072, "bf16"),
    "meta-llama/Prompt-Guard-86M": (279e6, 12, 12, 512, "fp32"),
    "ibm-granite/granite-guardian-3.1-2b": (2.53e9, 40, 8, 131072, "bf16"),
    "ibm-granite/granite-guardian-3.1-8b": (8.17e9, 40, 8, 131072, "bf16"),
    "google/shieldgemma-2b": (2.61e9, 26, 4, 8192, "bf16"),
    "meta-llama/Llama-3.1-8B-Instruct": (8.03e9, 32, 8, 131072, "bf16"),
    "meta-llama/Llama-3.1-70B-Instruct": (70.6e9, 80, 8, 131072, "bf16"),
    "Qwen/Qwen2.5-7B-Instruct": (7.6e9, 28, 4, 32768, "bf16"),
    "mistralai/Mistral-7B-Instruct-v0.3": (7.25e9, 32, 8, 32768, "bf16"),
}


def bundled_config(model_id: str) -> dict[str, Any]:
    text = BUNDLED.joinpath(model_id.replace("/", "__") + ".json").read_text()
    config: dict[str, Any] = json.loads(text)
    return config


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline by default and no inherited settings: only the fake Hub is ever reached."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FOUNDRYFLOW_OFFLINE", "1")


# --- architecture -------------------------------------------------------------------------


def test_the_bundled_catalog_is_exactly_the_published_models() -> None:
    names = sorted(entry.name for entry in BUNDLED.iterdir() if entry.name.endswith(".json"))
    assert names == sorted(m.replace("/", "__") + ".json" for m in PUBLISHED)


@pytest.mark.parametrize("model_id", sorted(PUBLISHED))
def test_bundled_config_matches_the_published_model(model_id: str) -> None:
    total, layers, kv_heads, context, dtype = PUBLISHED[model_id]
    arch = parse_config(BundledSource().fetch(model_id).config)
    assert arch.parameter_count == pytest.approx(total, rel=0.01)
    assert (arch.num_layers, arch.num_kv_heads, arch.max_context, arch.dtype) == (
        layers,
        kv_heads,
        context,
        dtype,
    )
    assert arch.is_decoder == (model_id != "meta-llama/Prompt-Guard-86M")


@pytest.mark.parametrize(
    "row", [m for m in seed.MODELS if m["uri"] in PUBLISHED], ids=lambda m: m["uri"]
)
def test_parsed_architecture_equals_the_benchmark_seed(row: dict[str, Any]) -> None:
    arch = parse_config(bundled_config(row["uri"]))
    assert arch.parameter_count == row["parameter_count"]
    assert (arch.num_layers, arch.hidden_size, arch.num_attention_heads) == (
        row["num_layers"],
        row["hidden_size"],
        row["num_attention_heads"],
    )
    assert (arch.num_kv_heads, arch.max_context) == (row["num_kv_heads"], row["max_context"])


def test_gemma_v1_uses_head_dim_and_ties_embeddings_by_default() -> None:
    # google/gemma-2b: multi-query attention, head_dim 256 (8 x 256 = 2048 = hidden), 2.51B.
    config = {
        "model_type": "gemma",
        "architectures": ["GemmaForCausalLM"],
        "hidden_size": 2048,
        "intermediate_size": 16384,
        "num_hidden_layers": 18,
        "num_attention_heads": 8,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "vocab_size": 256000,
        "max_position_embeddings": 8192,
        "torch_dtype": "bfloat16",
    }
    arch = parse_config(config)
    assert arch.tie_word_embeddings and arch.head_dim == 256 and arch.num_kv_heads == 1
    assert arch.parameter_count == pytest.approx(2.51e9, rel=0.01)


def test_kv_heads_default_to_attention_heads_and_untied_adds_lm_head() -> None:
    config = bundled_config("meta-llama/Llama-3.1-8B-Instruct")
    del config["num_key_value_heads"]
    mha = parse_config(config)
    assert mha.num_kv_heads == mha.num_attention_heads == 32
    tied = parse_config(
        {**bundled_config("meta-llama/Llama-3.1-8B-Instruct"), "tie_word_embeddings": True}
    )
    assert tied.parameter_count == 8_030_261_248 - 128256 * 4096


def test_explicit_parameter_count_wins() -> None:
    arch = parse_config(bundled_config("google/shieldgemma-2b"), parameter_count=2_614_341_888)
    assert arch.parameter_count == 2_614_341_888


@pytest.mark.parametrize(
    ("extra", "dtype"),
    [
        ({"torch_dtype": "float16"}, "fp16"),
        ({"torch_dtype": None, "dtype": "bfloat16"}, "bf16"),
        ({"quantization_config": {"quant_method": "fp8"}}, "fp8"),
        ({"quantization_config": {"quant_method": "awq", "bits": 4}}, "int4"),
    ],
)
def test_dtype(extra: dict[str, Any], dtype: str) -> None:
    config = {**bundled_config("mistralai/Mistral-7B-Instruct-v0.3"), **extra}
    config = {key: value for key, value in config.items() if value is not None}
    assert parse_config(config).dtype == dtype


def test_missing_torch_dtype_is_what_transformers_loads_float32() -> None:
    config = bundled_config("mistralai/Mistral-7B-Instruct-v0.3")
    del config["torch_dtype"]
    assert parse_config(config).dtype == "fp32"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model_type": "mamba"}, "unsupported model_type 'mamba'; supported: deberta-v2, gemma"),
        ({"hidden_size": 8}, "config.json has no model_type"),
        ({"model_type": "llama", "hidden_size": 4096}, "num_hidden_layers: Field required"),
        (
            {**bundled_config("meta-llama/Llama-3.1-8B-Instruct"), "num_key_value_heads": 5},
            "not a multiple of num_kv_heads 5",
        ),
        (
            {**bundled_config("meta-llama/Llama-3.1-8B-Instruct"), "torch_dtype": "float64"},
            "unsupported torch_dtype 'float64'",
        ),
    ],
)
def test_unreadable_configs_say_why(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ArchitectureError, match=message.replace("(", r"\(")):
        parse_config(config)


# --- model ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "message"),
    [
        ("../etc/passwd", "invalid model id"),
        ("/etc/passwd", "invalid model id"),
        ("org/../../etc", "invalid model id"),
        ("org/..", "invalid model id"),
        ("org/.hidden", "invalid model id"),
        ("org/name/extra", "invalid model id"),
        ("just-a-name", "invalid model id"),
        ("org\\name", "invalid model id"),
        ("org/na me", "invalid model id"),
        ("http://x", "is a URL"),
        ("https://huggingface.co/meta-llama/Llama-Guard-3-8B", "is a URL"),
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
    ],
)
def test_ugly_model_ids_are_refused_before_any_lookup(model_id: Any, message: str) -> None:
    with pytest.raises(InvalidModelIdError, match=message):
        split_model_id(model_id)
    with pytest.raises(InvalidModelIdError):
        fetch_config(model_id, resolve_sources())


def test_good_model_ids() -> None:
    assert split_model_id("Qwen/Qwen2.5-7B-Instruct") == ("Qwen", "Qwen2.5-7B-Instruct")
    assert split_model_id("ibm-granite/granite-guardian-3.1-2b")[0] == "ibm-granite"


# --- sources --------------------------------------------------------------------------------


def write_config(root: Path, model_id: str, config: dict[str, Any] | str) -> Path:
    path = root.joinpath(*model_id.split("/"), "config.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return path


def test_local_directory_from_argument_and_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = bundled_config("google/shieldgemma-2b")
    path = write_config(tmp_path, "acme/guard-1", config)
    fetched = LocalDirectorySource(tmp_path).fetch("acme/guard-1")
    assert (fetched.source, fetched.location, fetched.config) == ("local", str(path), config)

    with pytest.raises(NotInSource, match="FOUNDRYFLOW_MODEL_CONFIG_DIR is unset"):
        LocalDirectorySource().fetch("acme/guard-1")
    monkeypatch.setenv("FOUNDRYFLOW_MODEL_CONFIG_DIR", str(tmp_path))
    assert LocalDirectorySource().fetch("acme/guard-1").config == config
    with pytest.raises(NotInSource, match=r"no .*acme/other/config\.json"):
        LocalDirectorySource().fetch("acme/other")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", ""])
def test_a_broken_local_file_is_an_error_not_a_fallback(tmp_path: Path, content: str) -> None:
    write_config(tmp_path, "meta-llama/Llama-Guard-3-8B", content)
    sources: list[ConfigSource] = [LocalDirectorySource(tmp_path), BundledSource()]
    with pytest.raises(InvalidModelConfigError, match=r"config\.json"):
        fetch_config("meta-llama/Llama-Guard-3-8B", sources)


def test_local_directory_overrides_the_bundled_catalog(tmp_path: Path) -> None:
    custom = {**bundled_config("meta-llama/Llama-Guard-3-8B"), "max_position_embeddings": 8192}
    write_config(tmp_path, "meta-llama/Llama-Guard-3-8B", custom)
    fetched = fetch_config(
        "meta-llama/Llama-Guard-3-8B", [LocalDirectorySource(tmp_path), BundledSource()]
    )
    assert fetched.source == "local" and parse_config(fetched.config).max_context == 8192


def test_bundled_source() -> None:
    fetched = BundledSource().fetch("meta-llama/Prompt-Guard-86M")
    assert fetched.location == "foundryflow/registry/configs/meta-llama__Prompt-Guard-86M.json"
    assert fetched.config["model_type"] == "deberta-v2"
    with pytest.raises(NotInSource, match=r"bundled catalog: no .*acme__nothing\.json"):
        BundledSource().fetch("acme/nothing")


def test_policy_from_argument_environment_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert source_policy() == ("local", "bundled", "hub")
    monkeypatch.setenv("FOUNDRYFLOW_MODEL_CONFIG_SOURCES", "hub, bundled")
    assert source_policy() == ("hub", "bundled")
    assert [s.name for s in resolve_sources()] == ["hub", "bundled"]
    assert source_policy("bundled") == ("bundled",)
    for bad in ("", "bundled,ftp", ["hub", "s3"]):
        with pytest.raises(ModelConfigError, match="invalid config source policy"):
            source_policy(bad)


def test_unknown_model_lists_every_place_it_looked(tmp_path: Path) -> None:
    sources: list[ConfigSource] = [LocalDirectorySource(tmp_path), BundledSource(), HubSource()]
    with pytest.raises(ModelConfigNotFoundError) as caught:
        fetch_config("acme/no-such-model", sources)
    message = str(caught.value)
    assert message.startswith("no config.json found for acme/no-such-model; looked in:")
    assert f"local directory: no {tmp_path}/acme/no-such-model/config.json" in message
    assert "bundled catalog: no foundryflow/registry/configs/acme__no-such-model.json" in message
    assert "Hugging Face Hub: skipped, offline (FOUNDRYFLOW_OFFLINE=1)" in message
    assert len(caught.value.looked) == 3


# --- the fake Hub -----------------------------------------------------------------------------


@dataclass
class FakeHub:
    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def publish(self, model_id: str, config: dict[str, Any] | bytes, gated: bool = False) -> None:
        body = config if isinstance(config, bytes) else json.dumps(config).encode()
        self.files[f"/{model_id}/resolve/main/config.json"] = body
        if gated:
            self.gated.add(f"/{model_id}/resolve/main/config.json")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """huggingface.co's ``resolve`` layout; gated files need ``Authorization: Bearer TOKEN``."""
    state = FakeHub()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers.items())))
            body = state.files.get(self.path)
            auth = self.headers.get("Authorization")
            if body is None:
                self.send_error(404)
            elif self.path in state.gated and auth is None:
                self.send_error(401)
            elif self.path in state.gated and auth != f"Bearer {TOKEN}":
                self.send_error(403)
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("FOUNDRYFLOW_HF_ENDPOINT", state.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("FOUNDRYFLOW_OFFLINE")
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def test_hub_fetches_config_and_sends_the_token_as_bearer(hub: FakeHub) -> None:
    config = bundled_config("ibm-granite/granite-guardian-3.1-8b")
    hub.publish("acme/gated-guard", config, gated=True)
    fetched = HubSource(TOKEN).fetch("acme/gated-guard")
    assert fetched.source == "hub"
    assert fetched.location == f"{hub.url}/acme/gated-guard/resolve/main/config.json"
    assert fetched.config == config
    ((path, headers),) = hub.requests
    assert path == "/acme/gated-guard/resolve/main/config.json"
    assert headers["Authorization"] == f"Bearer {TOKEN}"


def test_hub_without_token_sends_no_authorization(hub: FakeHub) -> None:
    hub.publish("acme/open-guard", bundled_config("google/shieldgemma-2b"))
    assert HubSource().fetch("acme/open-guard").config["model_type"] == "gemma2"
    assert "Authorization" not in hub.requests[0][1]


def test_hf_endpoint_is_honoured_too(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOUNDRYFLOW_HF_ENDPOINT")
    monkeypatch.setenv("HF_ENDPOINT", hub.url + "/")
    hub.publish("acme/open-guard", bundled_config("google/shieldgemma-2b"))
    assert HubSource().fetch("acme/open-guard").location.startswith(hub.url + "/acme/")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "HTTP 401, a gated or private model (no token was given)"),
        ("hf_wrong42", "HTTP 403, a gated or private model (the token given has no access)"),
    ],
)
def test_hub_refusals_say_why(hub: FakeHub, token: str | None, reason: str) -> None:
    hub.publish("acme/gated-guard", bundled_config("google/shieldgemma-2b"), gated=True)
    with pytest.raises(ModelConfigNotFoundError) as caught:
        fetch_config("acme/gated-guard", [HubSource(token)])
    assert reason in str(caught.value)
    if token:
        assert token not in str(caught.value)


def test_the_token_appears_in_no_log_record_and_no_error(
    hub: FakeHub, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    hub.publish("acme/gated-guard", bundled_config("google/shieldgemma-2b"), gated=True)
    errors: list[str] = []
    sources = resolve_sources(["local", "hub"], token=TOKEN)
    sources[0] = LocalDirectorySource(tmp_path)
    fetch_config("acme/gated-guard", sources)
    for model_id in ("acme/missing", "acme/also-missing"):
        with pytest.raises(ModelConfigNotFoundError) as caught:
            fetch_config(model_id, sources)
        errors.append(str(caught.value))
    with pytest.raises(ModelConfigNotFoundError) as caught:  # nothing listens there
        fetch_config("acme/gated-guard", [HubSource(TOKEN, endpoint="http://127.0.0.1:9")])
    errors.append(str(caught.value))
    assert "ConnectError" in errors[-1]

    assert len(hub.requests) == 3 and caplog.records
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in (record.exc_text or "")
    assert TOKEN not in caplog.text
    assert all(TOKEN not in error for error in errors)
    assert TOKEN not in repr(sources[1]) and "**********" in repr(sources[1])


def test_a_huge_response_is_refused(hub: FakeHub) -> None:
    hub.publish("acme/huge", b" " * (2 << 20) + b"{}")
    with pytest.raises(InvalidModelConfigError, match="larger than"):
        HubSource().fetch("acme/huge")


def test_hub_falls_through_to_the_next_source(hub: FakeHub) -> None:
    fetched = fetch_config("google/shieldgemma-2b", resolve_sources("hub,bundled"))
    assert fetched.source == "bundled"
    assert hub.requests[0][0] == "/google/shieldgemma-2b/resolve/main/config.json"


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "FOUNDRYFLOW_OFFLINE"])
def test_offline_mode_skips_the_hub(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    hub.publish("acme/open-guard", bundled_config("google/shieldgemma-2b"))
    monkeypatch.setenv(variable, "1")
    with pytest.raises(NotInSource, match=f"offline \\({variable}=1\\)"):
        HubSource().fetch("acme/open-guard")
    fetched = fetch_config("google/shieldgemma-2b", resolve_sources("hub,bundled"))
    assert fetched.source == "bundled"
    assert hub.requests == []


# --- onboarding -------------------------------------------------------------------------------


@pytest.fixture
def new_uri() -> Iterator[Callable[[str], str]]:
    """Unique ``ff-test/<stem>-<hex>`` uris; their models (and versions, by cascade) are
    deleted after the test."""
    made: list[str] = []

    def make(stem: str) -> str:
        made.append(f"ff-test/{stem}-{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield make
    with session_scope() as session:
        session.execute(delete(Model).where(Model.uri.in_(made)))


@pytest.fixture
def model_dir(tmp_path: Path) -> Callable[[str, str], LocalDirectorySource]:
    """Publish a bundled config under another id in a local directory."""

    def publish(model_id: str, like: str) -> LocalDirectorySource:
        write_config(tmp_path, model_id, bundled_config(like))
        return LocalDirectorySource(tmp_path)

    return publish


def rows(uris: list[str]) -> tuple[int, int]:
    with session_scope() as session:
        models = session.scalar(select(func.count()).where(Model.uri.in_(uris)))
        versions = session.scalar(
            select(func.count()).select_from(ModelVersion).join(Model).where(Model.uri.in_(uris))
        )
    return models or 0, versions or 0


def test_onboarding_records_the_architecture_and_is_idempotent(
    new_uri: Callable[[str], str], model_dir: Callable[[str, str], LocalDirectorySource]
) -> None:
    guard, classifier = new_uri("guard"), new_uri("prompt-guard")
    model_dir(guard, "meta-llama/Llama-Guard-3-1B")
    source = model_dir(classifier, "meta-llama/Prompt-Guard-86M")

    with session_scope() as session:
        first = onboard_models(session, [guard, classifier, guard], sources=[source])
    assert first.failed == []
    assert [(m.uri, m.created, m.source) for m in first.onboarded] == [
        (guard, True, "local"),
        (classifier, True, "local"),
    ]
    with session_scope() as session:
        model = session.get_one(Model, first.onboarded[1].model_id)
        version = session.get_one(ModelVersion, first.onboarded[1].model_version_id)
        assert (model.uri, model.family, model.num_layers, model.num_kv_heads) == (
            classifier,
            "deberta-v2",
            12,
            12,
        )
        assert model.parameter_count == 278_811_651 and model.max_context == 512
        assert (version.model_id, version.version, version.dtype) == (model.id, "1", "fp32")

    with session_scope() as session:  # no sources at all: existing models are not fetched
        second = onboard_models(session, [guard, classifier], sources=[])
    assert [(m.model_id, m.model_version_id) for m in second.onboarded] == [
        (m.model_id, m.model_version_id) for m in first.onboarded
    ]
    assert [(m.created, m.source) for m in second.onboarded] == [(False, None), (False, None)]
    assert rows([guard, classifier]) == (2, 2)


def test_onboarding_a_model_that_is_in_the_catalog_without_a_version(
    new_uri: Callable[[str], str], model_dir: Callable[[str, str], LocalDirectorySource]
) -> None:
    uri = new_uri("bare")
    source = model_dir(uri, "google/shieldgemma-2b")
    with session_scope() as session:
        fields = ("parameter_count", "num_layers", "hidden_size", "num_attention_heads")
        session.add(
            Model(
                uri=uri, family="gemma2", num_kv_heads=1, max_context=1, **dict.fromkeys(fields, 1)
            )
        )
    with session_scope() as session:
        (model,) = onboard_models(session, [uri], sources=[source]).onboarded
    assert (model.created, model.dtype) == (False, "bf16")
    assert rows([uri]) == (1, 1)
    with session_scope() as session:  # the existing row is reported, not overwritten
        assert session.get_one(Model, model.model_id).parameter_count == 1


def test_best_effort_onboarding_keeps_the_models_that_succeeded(
    new_uri: Callable[[str], str], model_dir: Callable[[str, str], LocalDirectorySource]
) -> None:
    good, missing = new_uri("good"), new_uri("missing")
    source = model_dir(good, "Qwen/Qwen2.5-7B-Instruct")
    with session_scope() as session:
        result = onboard_models(session, [good, "../etc/passwd", missing], sources=[source])
    assert [m.uri for m in result.onboarded] == [good]
    assert [uri for uri, _ in result.failed] == ["../etc/passwd", missing]
    assert "invalid model id" in result.failed[0].error
    assert "no config.json found" in result.failed[1].error
    assert rows([good, missing]) == (1, 1)


def test_all_or_nothing_writes_nothing_and_lists_every_failure(
    new_uri: Callable[[str], str], model_dir: Callable[[str, str], LocalDirectorySource]
) -> None:
    good, missing = new_uri("good"), new_uri("missing")
    source = model_dir(good, "mistralai/Mistral-7B-Instruct-v0.3")
    with session_scope() as session, pytest.raises(OnboardingError) as caught:
        onboard_models_all_or_nothing(session, [good, missing, "http://x", ""], sources=[source])
    message = str(caught.value)
    assert message.startswith("onboarding failed for 3 of 4 models; nothing was written:")
    assert [uri for uri, _ in caught.value.failed] == [missing, "http://x", ""]
    assert f"- {missing}: no config.json found" in message and "is a URL" in message
    assert rows([good]) == (0, 0)

    with session_scope() as session:
        result = onboard_models_all_or_nothing(session, [good], sources=[source])
    assert [(m.uri, m.created) for m in result.onboarded] == [(good, True)]


def test_all_or_nothing_rolls_back_earlier_writes_when_a_later_one_fails(
    new_uri: Callable[[str], str],
    model_dir: Callable[[str, str], LocalDirectorySource],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = new_uri("first"), new_uri("second")
    model_dir(first, "meta-llama/Llama-Guard-3-8B")
    source = model_dir(second, "ibm-granite/granite-guardian-3.1-2b")
    real_record = onboard_module._record

    def record(session: Session, item: Any) -> Any:
        if item.uri == second:
            raise IntegrityError("INSERT INTO models", {}, Exception("injected failure"))
        return real_record(session, item)

    monkeypatch.setattr(onboard_module, "_record", record)
    # The caller catches the error and commits: the savepoint still leaves nothing behind.
    with session_scope() as session, pytest.raises(OnboardingError) as caught:
        onboard_models_all_or_nothing(session, [first, second], sources=[source])
    assert [uri for uri, _ in caught.value.failed] == [second]
    assert "database: IntegrityError: injected failure" in str(caught.value)
    assert rows([first, second]) == (0, 0)


def test_onboarding_from_the_hub_with_a_token(
    hub: FakeHub, new_uri: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gated, refused = new_uri("gated"), new_uri("refused")
    hub.publish(gated, bundled_config("ibm-granite/granite-guardian-3.1-2b"), gated=True)
    hub.publish(refused, bundled_config("ibm-granite/granite-guardian-3.1-2b"), gated=True)
    with session_scope() as session:
        result = onboard_models(session, [gated], token=TOKEN, sources="hub")
    assert [(m.uri, m.source, m.created) for m in result.onboarded] == [(gated, "hub", True)]
    with session_scope() as session, pytest.raises(OnboardingError) as caught:
        onboard_models_all_or_nothing(
            session, [refused], token="hf_notTheRightOne42", sources="hub"
        )
    assert "HTTP 403" in str(caught.value) and "hf_notTheRightOne42" not in str(caught.value)
    assert TOKEN not in caplog.text and "hf_notTheRightOne42" not in caplog.text


def test_a_custom_source_that_leaks_the_token_is_scrubbed(new_uri: Callable[[str], str]) -> None:
    class Leaky:
        name = "leaky"

        def fetch(self, model_id: str) -> FetchedConfig:
            raise InvalidModelConfigError(f"{model_id}: GET with Authorization: Bearer {TOKEN}")

    uri = new_uri("leaky")
    with session_scope() as session:
        result = onboard_models(session, [uri], token=TOKEN, sources=[Leaky()])
    assert TOKEN not in result.failed[0].error and "Bearer **********" in result.failed[0].error
