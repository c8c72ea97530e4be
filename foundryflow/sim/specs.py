"""The simulator's inputs — a model, a hardware node, a workload — validated once, DB-free.

The math (:mod:`foundryflow.sim.model`) takes these, never ORM rows, so it runs without a
database (the CLI's seed fallback, the benchmark) and trusts every figure it reads. The
``from_catalog`` constructors build them from catalog rows (:mod:`foundryflow.store.catalog`).
Validation errors are pydantic's, naming the field: ``concurrency: Input should be greater
than or equal to 1``, ``dtype: Input should be 'fp32', 'bf16', ...``.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from foundryflow.sim.constants import (
    ACTIVATION_BYTES_PER_TOKEN_HIDDEN,
    ACTIVATION_PROFILE_TOKENS,
    BYTES_PER_PARAM,
)

if TYPE_CHECKING:  # rows are only read: the math stays importable without the ORM
    from foundryflow.store.catalog import HardwareConfig, Model, UseCase

Dtype = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4"]
DeviceType = Literal["gpu", "cpu", "hpu"]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ModelSpec(_Spec):
    """A decoder-only transformer's architecture (from its ``config.json``) and weight dtype."""

    name: str = Field(min_length=1)
    parameter_count: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    max_context: int = Field(gt=0)
    dtype: Dtype = "bf16"

    @model_validator(mode="after")
    def _heads_divide(self) -> Self:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                f"{self.num_attention_heads}: head_dim would not be whole"
            )
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_kv_heads {self.num_kv_heads} (grouped-query attention shares each "
                "KV head among a whole group of query heads)"
            )
        return self

    @classmethod
    def from_catalog(cls, model: Model, dtype: str) -> ModelSpec:
        """From a ``models`` row and the dtype of one of its versions."""
        return cls.model_validate(
            {
                "name": model.uri,
                "parameter_count": model.parameter_count,
                "num_layers": model.num_layers,
                "hidden_size": model.hidden_size,
                "num_attention_heads": model.num_attention_heads,
                "num_kv_heads": model.num_kv_heads,
                "max_context": model.max_context,
                "dtype": dtype,
            }
        )

    @cached_property
    def weight_bytes(self) -> float:
        return self.parameter_count * BYTES_PER_PARAM[self.dtype]

    @cached_property
    def activation_bytes(self) -> int:
        """Bytes of one activation / KV element: 16-bit unless the model runs in fp32.

        Weight-only quantisation (int4 AWQ/GPTQ) and fp8/int8 weights keep activations and
        the KV cache in 16 bits by default (vLLM's ``kv_cache_dtype="auto"``)."""
        return 4 if self.dtype == "fp32" else 2

    @cached_property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @cached_property
    def kv_bytes_per_token(self) -> int:
        """K and V of one token over all layers, whole model: 2 x layers x kv_heads x head_dim
        x bytes. With GQA only the KV heads count: 128 KiB for Llama-3.1-8B in bf16."""
        return self.kv_bytes_per_token_per_device(1)

    def kv_bytes_per_token_per_device(self, tp: int) -> int:
        """KV heads are split over TP devices; beyond one per device they are replicated
        (vLLM), so a device never holds less than one KV head."""
        heads = max(self.num_kv_heads // tp, 1)
        return 2 * self.num_layers * heads * self.head_dim * self.activation_bytes

    @cached_property
    def activation_peak_bytes(self) -> float:
        """Peak activation memory per device (see ACTIVATION_BYTES_PER_TOKEN_HIDDEN)."""
        return ACTIVATION_PROFILE_TOKENS * self.hidden_size * ACTIVATION_BYTES_PER_TOKEN_HIDDEN

    def tp_problem(self, tp: int) -> str | None:
        """Why the model cannot be split over ``tp`` devices, or None when it can.

        Attention heads must split evenly; KV heads must too, or be replicated whole
        (``tp`` a multiple of them) — vLLM's rules for tensor-parallel attention."""
        if self.num_attention_heads % tp:
            return f"{self.num_attention_heads} attention heads do not split over {tp} devices"
        if self.num_kv_heads % tp and tp % self.num_kv_heads:
            return f"{self.num_kv_heads} KV heads neither split over nor replicate to {tp}"
        return None


class HardwareSpec(_Spec):
    """One node shape: per-device figures x ``device_count`` devices (see HardwareConfig)."""

    name: str = Field(min_length=1)
    device_type: DeviceType = "gpu"
    device_count: int = Field(gt=0)
    memory_gb_per_device: float = Field(gt=0)
    memory_bandwidth_gbps: float = Field(gt=0)
    peak_bf16_tflops: float = Field(gt=0)
    peak_fp8_tflops: float | None = Field(default=None, gt=0)
    interconnect_bandwidth_gbps: float = Field(gt=0)
    """Vendor figure per device, both directions together (H100 NVLink: 900 GB/s)."""

    @classmethod
    def from_catalog(cls, hardware: HardwareConfig) -> HardwareSpec:
        """From a ``hardware_configs`` row; only the fields the math needs are read."""
        return cls.model_validate(hardware, from_attributes=True)

    def peak_tflops(self, dtype: str) -> float:
        """Dense peak for the GEMMs of ``dtype`` weights.

        fp8/int8 (W8A8) run on 8-bit tensor cores where the device has them (H100's dense
        INT8 and FP8 rates are equal); on devices without FP8 figures they are taken to run
        as 16-bit (vLLM's Marlin weight-only path). int4 is weight-only: 16-bit math. fp32
        is taken at half the 16-bit rate (TF32 tensor cores on A100/H100; assumption)."""
        if dtype in ("fp8", "int8") and self.peak_fp8_tflops is not None:
            return self.peak_fp8_tflops
        if dtype == "fp32":
            return self.peak_bf16_tflops / 2
        return self.peak_bf16_tflops


class Workload(_Spec):
    """What a deployment must serve, per replica, and the targets it must meet.

    ``concurrency`` is the number of requests one replica holds at once (the matrix's batch
    size); replicas come from ``target_rps`` (:mod:`foundryflow.sim.capacity`).
    """

    concurrency: int = Field(ge=1)
    input_tokens: int = Field(ge=1)
    output_tokens: int = Field(ge=1)
    target_ttft_ms: float | None = Field(default=None, gt=0)
    target_e2e_ms: float | None = Field(default=None, gt=0)
    target_rps: float | None = Field(default=None, gt=0)
    spike_buffer: bool = False
    """Provision for twice ``target_rps`` (seed 002's traffic spike buffer)."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.spike_buffer and self.target_rps is None:
            raise ValueError("spike_buffer doubles target_rps: give target_rps too")
        if (
            self.target_ttft_ms is not None
            and self.target_e2e_ms is not None
            and self.target_e2e_ms < self.target_ttft_ms
        ):
            raise ValueError(
                f"target_e2e_ms {self.target_e2e_ms:g} is below target_ttft_ms "
                f"{self.target_ttft_ms:g}: the first token is part of the whole response"
            )
        return self

    @classmethod
    def from_catalog(
        cls,
        use_case: UseCase,
        concurrency: int,
        target_rps: float | None = None,
        spike_buffer: bool = False,
    ) -> Workload:
        """A use case's token counts and latency targets at ``concurrency``."""
        return cls(
            concurrency=concurrency,
            input_tokens=use_case.input_tokens,
            output_tokens=use_case.output_tokens,
            target_ttft_ms=use_case.target_ttft_ms,
            target_e2e_ms=use_case.target_e2e_ms,
            target_rps=target_rps,
            spike_buffer=spike_buffer,
        )
