"""A model's architecture from its ``config.json``, the parameter count computed from shapes.

config.json rarely states a parameter count, and the simulator needs an exact one (weight
memory is parameters x bytes per parameter), so it is summed from the tensors the config
implies, the way ``transformers`` builds the model:

decoders (Llama, Mistral, Qwen2, Granite, Gemma, Gemma 2)
    embeddings ``vocab x hidden``;
    per layer: attention ``q, o: hidden x heads*head_dim`` and ``k, v: hidden x
    kv_heads*head_dim`` (grouped-query attention), plus biases where the family has them
    (Qwen2: q, k, v; ``attention_bias``: q, k, v, o); a gated MLP (SwiGLU / GeGLU: gate, up,
    down = 3 x hidden x intermediate, plus biases with ``mlp_bias``); RMSNorm weights (2
    per layer, 4 in Gemma 2);
    a final norm, and ``lm_head`` (``vocab x hidden``) unless tied to the embeddings.
DeBERTa-v2 (encoders, e.g. Prompt Guard)
    embeddings (word, absolute positions when ``position_biased_input``, token types), an
    embedding LayerNorm; per layer q, k, v, o with biases (plus the positional projections
    when keys are not shared), a non-gated MLP (2 matrices) and 2 LayerNorms; the relative
    position embeddings; and the sequence-classification head (pooler + classifier).

Checked against published totals in ``tests/test_registry.py`` (exact for the models of the
benchmark seed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Dtype = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4"]
"""The dtypes of :class:`foundryflow.store.catalog.ModelVersion` and the simulator."""

_TORCH_DTYPES: Final[dict[str, Dtype]] = {
    "float32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
}
_QUANTIZED_BITS: Final[dict[int, Dtype]] = {4: "int4", 8: "int8"}


class ArchitectureError(ValueError):
    """A config.json this module cannot read: unsupported model type or missing fields."""


class Architecture(BaseModel):
    """What the registry records about a model, and what the simulator needs."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model_type: str = Field(description="config.json ``model_type``: the catalog's family.")
    architectures: tuple[str, ...]
    is_decoder: bool = Field(description="False for encoders (DeBERTa): no KV cache to plan.")
    parameter_count: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_context: int = Field(gt=0, description="``max_position_embeddings``.")
    tie_word_embeddings: bool
    dtype: Dtype

    @model_validator(mode="after")
    def _kv_heads_divide(self) -> Self:
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_kv_heads {self.num_kv_heads}"
            )
        return self


class _Config(BaseModel):
    """Fields every supported config.json has; the rest of the file is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    architectures: tuple[str, ...] = ()
    num_hidden_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)


class _DecoderConfig(_Config):
    num_key_value_heads: int | None = Field(default=None, gt=0)
    head_dim: int | None = Field(default=None, gt=0)
    tie_word_embeddings: bool | None = None
    attention_bias: bool = False
    mlp_bias: bool = False


class _DebertaV2Config(_Config):
    """Defaults are ``DebertaV2Config``'s and the ``getattr`` defaults of its modules."""

    embedding_size: int | None = Field(default=None, gt=0)
    position_biased_input: bool = True
    type_vocab_size: int = Field(default=0, ge=0)
    relative_attention: bool = False
    max_relative_positions: int = -1
    position_buckets: int = -1
    pos_att_type: list[str] | str | None = None
    share_att_key: bool = False
    norm_rel_ebd: str = "none"
    conv_kernel_size: int = Field(default=0, ge=0)
    conv_groups: int = Field(default=1, gt=0)
    pooler_hidden_size: int | None = Field(default=None, gt=0)
    id2label: dict[str, str] | None = None
    num_labels: int | None = Field(default=None, gt=0)


@dataclass(frozen=True)
class _DecoderLayout:
    """Where decoder families differ in tensors a config.json does not spell out."""

    qkv_bias: bool = False
    norms_per_layer: int = 2
    tied_by_default: bool = False
    """``tie_word_embeddings`` when the config omits it: each config class's own default."""


_DECODERS: Final[dict[str, _DecoderLayout]] = {
    "llama": _DecoderLayout(),
    "mistral": _DecoderLayout(),
    "granite": _DecoderLayout(),
    "qwen2": _DecoderLayout(qkv_bias=True),
    "gemma": _DecoderLayout(tied_by_default=True),
    "gemma2": _DecoderLayout(tied_by_default=True, norms_per_layer=4),
}


def _dtype(config: Mapping[str, Any]) -> Dtype:
    """Weight dtype: a quantization config wins over ``torch_dtype`` (then the compute dtype);
    with neither, transformers loads float32, so that is what the weights take."""
    quantization = config.get("quantization_config")
    if isinstance(quantization, Mapping):
        method = quantization.get("quant_method")
        if method == "fp8":
            return "fp8"
        bits = quantization.get("bits")
        if isinstance(bits, int) and bits in _QUANTIZED_BITS:
            return _QUANTIZED_BITS[bits]
        raise ArchitectureError(f"unsupported quantization_config (quant_method {method!r})")
    name = config.get("torch_dtype", config.get("dtype", "float32"))
    if name not in _TORCH_DTYPES:
        raise ArchitectureError(
            f"unsupported torch_dtype {name!r}: expected one of {', '.join(_TORCH_DTYPES)}"
        )
    return _TORCH_DTYPES[name]


def _decoder(
    model_type: str, config: Mapping[str, Any], parameter_count: int | None
) -> Architecture:
    layout = _DECODERS[model_type]
    c = _DecoderConfig.model_validate(config)
    hidden, heads = c.hidden_size, c.num_attention_heads
    kv_heads = c.num_key_value_heads or heads
    head_dim = c.head_dim or hidden // heads
    tied = layout.tied_by_default if c.tie_word_embeddings is None else c.tie_word_embeddings

    q_out, kv_out = heads * head_dim, kv_heads * head_dim
    attention = 2 * hidden * q_out + 2 * hidden * kv_out
    if c.attention_bias:
        attention += q_out + 2 * kv_out + hidden
    elif layout.qkv_bias:
        attention += q_out + 2 * kv_out
    mlp = 3 * hidden * c.intermediate_size
    if c.mlp_bias:
        mlp += 2 * c.intermediate_size + hidden
    layer = attention + mlp + layout.norms_per_layer * hidden
    embeddings = c.vocab_size * hidden
    computed = embeddings + c.num_hidden_layers * layer + hidden + (0 if tied else embeddings)

    return Architecture(
        model_type=model_type,
        architectures=c.architectures,
        is_decoder=True,
        parameter_count=parameter_count or computed,
        num_layers=c.num_hidden_layers,
        hidden_size=hidden,
        intermediate_size=c.intermediate_size,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=c.vocab_size,
        max_context=c.max_position_embeddings,
        tie_word_embeddings=tied,
        dtype=_dtype(config),
    )


def _linear(n_in: int, n_out: int) -> int:
    """Weights and bias of an ``nn.Linear``."""
    return n_in * n_out + n_out


def _deberta_v2(
    model_type: str, config: Mapping[str, Any], parameter_count: int | None
) -> Architecture:
    c = _DebertaV2Config.model_validate(config)
    hidden, heads, inter = c.hidden_size, c.num_attention_heads, c.intermediate_size
    layer_norm = 2 * hidden
    embedding = c.embedding_size or hidden

    embeddings = c.vocab_size * embedding + layer_norm
    if c.position_biased_input:
        embeddings += c.max_position_embeddings * embedding
    embeddings += c.type_vocab_size * embedding
    if embedding != hidden:
        embeddings += embedding * hidden  # embed_proj, no bias

    pos_att_type = c.pos_att_type or []
    if isinstance(pos_att_type, str):
        pos_att_type = [part.strip() for part in pos_att_type.lower().split("|")]
    attention = 4 * _linear(hidden, hidden) + layer_norm  # q, k, v, output dense
    if c.relative_attention and not c.share_att_key:
        attention += sum(_linear(hidden, hidden) for kind in ("c2p", "p2c") if kind in pos_att_type)
    layer = attention + _linear(hidden, inter) + _linear(inter, hidden) + layer_norm

    encoder = c.num_hidden_layers * layer
    if c.relative_attention:
        relative = (
            c.max_relative_positions if c.max_relative_positions >= 1 else c.max_position_embeddings
        )
        buckets = c.position_buckets if c.position_buckets > 0 else relative
        encoder += 2 * buckets * hidden
    if "layer_norm" in c.norm_rel_ebd.lower().split("|"):
        encoder += layer_norm
    if c.conv_kernel_size:
        encoder += hidden * (hidden // c.conv_groups) * c.conv_kernel_size + hidden + layer_norm

    head = 0
    if any(name.endswith("ForSequenceClassification") for name in c.architectures):
        pooler = c.pooler_hidden_size or hidden
        labels = len(c.id2label) if c.id2label else (c.num_labels or 2)
        head = _linear(pooler, pooler) + _linear(pooler, labels)

    return Architecture(
        model_type=model_type,
        architectures=c.architectures,
        is_decoder=False,
        parameter_count=parameter_count or embeddings + encoder + head,
        num_layers=c.num_hidden_layers,
        hidden_size=hidden,
        intermediate_size=inter,
        num_attention_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        vocab_size=c.vocab_size,
        max_context=c.max_position_embeddings,
        tie_word_embeddings=False,
        dtype=_dtype(config),
    )


_Parser = Callable[[str, Mapping[str, Any], int | None], Architecture]
_PARSERS: Final[dict[str, _Parser]] = {
    **{model_type: _decoder for model_type in _DECODERS},
    "deberta-v2": _deberta_v2,
}
SUPPORTED_MODEL_TYPES: Final = tuple(sorted(_PARSERS))


def parse_config(config: Mapping[str, Any], *, parameter_count: int | None = None) -> Architecture:
    """The architecture a config.json describes.

    ``parameter_count`` is for a caller that knows the published total (safetensors
    metadata, a model card); otherwise it is computed from the shapes.
    """
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ArchitectureError("config.json has no model_type")
    parser = _PARSERS.get(model_type)
    if parser is None:
        raise ArchitectureError(
            f"unsupported model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    try:
        return parser(model_type, config, parameter_count)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'config'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ArchitectureError(f"config.json of a {model_type} model: {problems}") from None
