"""Reference catalog: hardware from vendor spec sheets, frameworks, use cases, models.

Figures are per device and *dense* (vendor sheets often print sparse peaks: those are
halved here, as noted per row). CPU rows describe one socket as the "device"; their peak
is derived from core count, base clock and the matrix/vector unit width, as noted.
Model architectures come from each model's published ``config.json``.

``seed_catalog`` upserts by natural key, so running it again changes nothing unless a
figure here was corrected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from foundryflow.store.catalog import (
    HardwareConfig,
    InferenceFramework,
    Model,
    ModelVersion,
    UseCase,
)

H100 = "NVIDIA H100 Tensor Core GPU datasheet (SXM5: BF16 1,979 TF sparse, FP8 3,958 TF sparse)"
H100_PCIE = (
    "NVIDIA H100 Tensor Core GPU datasheet (PCIe: BF16 1,513 TF sparse, FP8 3,026 TF sparse)"
)
H200 = "NVIDIA H200 Tensor Core GPU datasheet (SXM: BF16 1,979 TF sparse, FP8 3,958 TF sparse)"
B200 = "NVIDIA DGX B200 datasheet (1,440 GB and 64 TB/s for 8 GPUs; FP8 72 PF sparse for 8)"
A100 = "NVIDIA A100 Tensor Core GPU datasheet (BF16 624 TF sparse; no FP8)"
L40S = "NVIDIA L40S datasheet (BF16 733 TF sparse, FP8 1,466 TF sparse)"
L4 = "NVIDIA L4 datasheet (BF16 242 TF sparse, FP8 485 TF sparse)"
A10 = "NVIDIA A10 datasheet (BF16 250 TF sparse; no FP8)"
MI300X = "AMD Instinct MI300X datasheet (BF16 1,307.4 TF, FP8 2,614.9 TF dense)"
GAUDI2 = "Intel Gaudi 2 AI accelerator white paper (MME BF16 432 TF, FP8 865 TF)"
XEON = (
    "Intel Xeon Platinum 8480+ product brief: 56 cores, 2.0 GHz base, 8 ch DDR5-4800 "
    "(8 x 38.4 GB/s); AMX BF16 = 1,024 FLOP/cycle/core x 56 x 2.0 GHz"
)
EPYC = (
    "AMD EPYC 9654 product brief: 96 cores, 2.4 GHz base, 12 ch DDR5-4800 "
    "(12 x 38.4 GB/s); AVX-512 BF16 = 64 FLOP/cycle/core x 96 x 2.4 GHz"
)


def _gpu(
    name: str, vendor: str, model: str, count: int, memory: float, bandwidth: float,
    bf16: float, fp8: float | None, link: str, link_gbps: float, source: str,
    device_type: str = "gpu",
) -> dict[str, Any]:  # fmt: skip
    return {
        "name": name, "vendor": vendor, "device_type": device_type, "device_model": model,
        "device_count": count, "memory_gb_per_device": memory,
        "memory_bandwidth_gbps": bandwidth, "peak_bf16_tflops": bf16, "peak_fp8_tflops": fp8,
        "interconnect": link, "interconnect_bandwidth_gbps": link_gbps, "source": source,
    }  # fmt: skip


HARDWARE: list[dict[str, Any]] = [
    *(
        _gpu(f"h100-sxm-80gb-x{n}", "NVIDIA", "H100 SXM5", n, 80, 3350, 989.5, 1979, "NVLink 4", 900, H100)
        for n in (1, 2, 4, 8)
    ),
    _gpu("h100-pcie-80gb-x1", "NVIDIA", "H100 PCIe", 1, 80, 2000, 756.5, 1513, "PCIe 5.0 x16", 128, H100_PCIE),
    *(
        _gpu(f"h200-sxm-141gb-x{n}", "NVIDIA", "H200 SXM", n, 141, 4800, 989.5, 1979, "NVLink 4", 900, H200)
        for n in (1, 8)
    ),
    _gpu("b200-180gb-x8", "NVIDIA", "B200", 8, 180, 8000, 2250, 4500, "NVLink 5", 1800, B200),
    *(
        _gpu(f"a100-sxm-80gb-x{n}", "NVIDIA", "A100 SXM4 80GB", n, 80, 2039, 312, None, "NVLink 3", 600, A100)
        for n in (1, 8)
    ),
    _gpu("a100-pcie-40gb-x1", "NVIDIA", "A100 PCIe 40GB", 1, 40, 1555, 312, None, "PCIe 4.0 x16", 64, A100),
    *(
        _gpu(f"l40s-48gb-x{n}", "NVIDIA", "L40S", n, 48, 864, 366.5, 733, "PCIe 4.0 x16", 64, L40S)
        for n in (1, 4)
    ),
    _gpu("l4-24gb-x1", "NVIDIA", "L4", 1, 24, 300, 121, 242.5, "PCIe 4.0 x16", 64, L4),
    _gpu("a10-24gb-x1", "NVIDIA", "A10", 1, 24, 600, 125, None, "PCIe 4.0 x16", 64, A10),
    *(
        _gpu(f"mi300x-192gb-x{n}", "AMD", "Instinct MI300X", n, 192, 5300, 1307.4, 2614.9, "Infinity Fabric", 896, MI300X)
        for n in (1, 8)
    ),
    _gpu("gaudi2-96gb-x8", "Intel", "Gaudi 2", 8, 96, 2450, 432, 865, "RoCE 24x100GbE", 300, GAUDI2, "hpu"),
    _gpu("xeon-8480plus-2s", "Intel", "Xeon Platinum 8480+", 2, 256, 307.2, 114.7, None, "UPI 2.0", 64, XEON, "cpu"),
    _gpu("epyc-9654-2s", "AMD", "EPYC 9654", 2, 384, 460.8, 14.7, None, "Infinity Fabric", 64, EPYC, "cpu"),
]  # fmt: skip

FRAMEWORKS: list[dict[str, Any]] = [
    {"name": "vllm", "version": "0.11.0", "device_types": ["gpu", "cpu", "hpu"],
     "description": "vLLM: PagedAttention, continuous batching; CUDA, ROCm, CPU and Gaudi backends."},
    {"name": "tgi", "version": "3.3.4", "device_types": ["gpu", "hpu"],
     "description": "Hugging Face Text Generation Inference; Gaudi through optimum-habana."},
    {"name": "lmdeploy", "version": "0.10.0", "device_types": ["gpu"],
     "description": "LMDeploy TurboMind engine; NVIDIA GPUs."},
]  # fmt: skip

USE_CASES: list[dict[str, Any]] = [
    {"name": "chatbot", "description": "Interactive chat", "input_tokens": 512, "output_tokens": 256, "target_ttft_ms": 500, "target_e2e_ms": 10000},
    {"name": "guardrail", "description": "Safety classification of a prompt or reply", "input_tokens": 512, "output_tokens": 16, "target_ttft_ms": 150, "target_e2e_ms": 500},
    {"name": "rag", "description": "Answering over retrieved passages", "input_tokens": 3072, "output_tokens": 256, "target_ttft_ms": 1000, "target_e2e_ms": 15000},
    {"name": "code_generation", "description": "Code completion and generation", "input_tokens": 1024, "output_tokens": 512, "target_ttft_ms": 500, "target_e2e_ms": 20000},
    {"name": "summarization", "description": "Summaries of long documents", "input_tokens": 6144, "output_tokens": 512, "target_ttft_ms": 3000, "target_e2e_ms": 30000},
    {"name": "translation", "description": "Sentence and paragraph translation", "input_tokens": 512, "output_tokens": 512, "target_ttft_ms": 800, "target_e2e_ms": 15000},
    {"name": "classification", "description": "Short label outputs", "input_tokens": 512, "output_tokens": 8, "target_ttft_ms": 200, "target_e2e_ms": 400},
    {"name": "agent", "description": "Tool-using multi-step agents", "input_tokens": 8192, "output_tokens": 1024, "target_ttft_ms": 2000, "target_e2e_ms": 60000},
    {"name": "long_context_qa", "description": "Questions over very long inputs", "input_tokens": 32768, "output_tokens": 512, "target_ttft_ms": 10000, "target_e2e_ms": 60000},
    {"name": "batch_inference", "description": "Offline throughput-bound jobs", "input_tokens": 1024, "output_tokens": 1024, "target_ttft_ms": 60000, "target_e2e_ms": 600000},
]  # fmt: skip

MODELS: list[dict[str, Any]] = [
    {"uri": "meta-llama/Llama-3.1-8B-Instruct", "family": "llama", "parameter_count": 8_030_261_248, "num_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "num_kv_heads": 8, "max_context": 131072},
    {"uri": "meta-llama/Llama-3.1-70B-Instruct", "family": "llama", "parameter_count": 70_553_706_496, "num_layers": 80, "hidden_size": 8192, "num_attention_heads": 64, "num_kv_heads": 8, "max_context": 131072},
    {"uri": "meta-llama/Llama-3.1-405B-Instruct", "family": "llama", "parameter_count": 405_853_388_800, "num_layers": 126, "hidden_size": 16384, "num_attention_heads": 128, "num_kv_heads": 8, "max_context": 131072},
    {"uri": "meta-llama/Llama-Guard-3-8B", "family": "llama", "parameter_count": 8_030_261_248, "num_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "num_kv_heads": 8, "max_context": 131072},
    {"uri": "meta-llama/Llama-Guard-3-1B", "family": "llama", "parameter_count": 1_498_482_688, "num_layers": 16, "hidden_size": 2048, "num_attention_heads": 32, "num_kv_heads": 8, "max_context": 131072},
    {"uri": "Qwen/Qwen2.5-7B-Instruct", "family": "qwen2", "parameter_count": 7_615_616_512, "num_layers": 28, "hidden_size": 3584, "num_attention_heads": 28, "num_kv_heads": 4, "max_context": 32768},
    {"uri": "mistralai/Mistral-7B-Instruct-v0.3", "family": "mistral", "parameter_count": 7_248_023_552, "num_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "num_kv_heads": 8, "max_context": 32768},
]  # fmt: skip


@dataclass(frozen=True)
class SeedCounts:
    hardware: int
    frameworks: int
    use_cases: int
    models: int
    model_versions: int


def _upsert(session: Session, table: Any, rows: list[dict[str, Any]], key: str) -> None:
    statement = insert(table).values(rows)
    updates = {column: statement.excluded[column] for column in rows[0] if column != key}
    session.execute(statement.on_conflict_do_update(index_elements=[key], set_=updates))


def seed_catalog(session: Session) -> SeedCounts:
    """Upsert the reference catalog; one bf16 version "1" per model."""
    _upsert(session, HardwareConfig, HARDWARE, "name")
    _upsert(session, InferenceFramework, FRAMEWORKS, "name")
    _upsert(session, UseCase, USE_CASES, "name")
    _upsert(session, Model, MODELS, "uri")
    model_ids = session.scalars(select(Model.id).where(Model.uri.in_([m["uri"] for m in MODELS])))
    session.execute(
        insert(ModelVersion)
        .values([{"model_id": model_id, "version": "1", "dtype": "bf16"} for model_id in model_ids])
        .on_conflict_do_nothing()
    )
    return SeedCounts(len(HARDWARE), len(FRAMEWORKS), len(USE_CASES), len(MODELS), len(MODELS))
