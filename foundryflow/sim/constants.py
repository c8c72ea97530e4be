"""The simulator's constants, each with where it comes from.

Hardware figures (memory, bandwidth, peak TFLOPs, interconnect) are not here: they come
from the catalog (:mod:`foundryflow.benchmark.seed` cites a vendor datasheet per row). What
is here is how much of those peaks a serving engine gets, and what it keeps besides the
weights. Figures marked *assumption* are round values chosen by us within what is commonly
reported; they are not measurements of ours, and predictions inherit their error.
"""

from __future__ import annotations

GB = 1e9
"""Vendor gigabytes. The catalog's "80 GB" is read as 80 x 10⁹ bytes, the smaller reading
(an H100 80GB reports 79.22 GiB = 85.1 x 10⁹ to CUDA), as ``matrix.weights_fit`` does: a
config never passes by a unit confusion, and predictions are ~6% conservative on memory."""

BYTES_PER_PARAM: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}
"""Bytes per weight by dtype. int4 ignores the group scales of AWQ/GPTQ (about 3% more at
group size 128)."""

GPU_MEMORY_UTILIZATION = 0.90
"""Share of each device's memory the engine may use for weights, activations, runtime and
KV cache together: vLLM's default ``--gpu-memory-utilization`` (documented in vLLM's engine
arguments). The other 10% is headroom for allocator fragmentation and other processes."""

RUNTIME_RESERVE_GB = 2.0
"""Memory per device outside PyTorch's allocator: CUDA context, cuBLAS workspaces, CUDA
graphs. vLLM's memory profile of Llama-3-8B on one H100 (vllm-project/vllm PR #10511)
reports ``non_torch_memory 1.79GiB`` (1.92 GB); we round up. Other reports show as little
as 0.16-0.20 GiB (PRs #12126, #14447), so this is on the safe side."""

TP_RESERVE_GB = 2.0
"""Extra memory per device when tensor parallel: NCCL and custom all-reduce buffers. The
same report shows ``non_torch_memory`` doubling to 3.58 GiB at TP=2 (+1.79 GiB)."""

ACTIVATION_PROFILE_TOKENS = 8192
"""Tokens in the forward pass an engine sizes its activation memory for: vLLM profiles a
pass of ``max_num_batched_tokens``, which was 8192 (Llama-3-8B's context length) in the
report below. Engines configured with larger batches need more."""

ACTIVATION_BYTES_PER_TOKEN_HIDDEN = 40.0
"""Peak activation bytes per token per hidden unit, calibrated on one measurement:
PR #10511 reports ``PyTorch activation peak memory 1.26GiB`` for Llama-3-8B (hidden 4096)
at 8192 tokens: 1.353e9 / (8192 x 4096) = 40.3. The same report shows the figure unchanged
at TP=2, so activations are *not* divided by the TP degree here. Assumption: that it scales
with hidden size (residual stream and MLP intermediates do) for other models."""

COMPUTE_EFFICIENCY = 0.50
"""Model FLOPs utilisation: achieved / peak dense tensor FLOPs in compute-bound phases
(prefill, large-batch decode). Assumption: the middle of the 40-60% prefill MFU commonly
quoted for vLLM, TGI and TensorRT-LLM on large GEMMs; not measured here."""

BANDWIDTH_EFFICIENCY = 0.80
"""Achieved / peak memory bandwidth in the memory-bound decode step (weights and KV cache
streamed once per step). Assumption: memory-bound kernels reach roughly 70-90% of HBM peak
on current GPUs. With 0.8, Llama-3.1-8B bf16 on one H100 decodes at ~6 ms per token at
batch 1 (~165 tokens/s)."""

ALLREDUCE_LATENCY_S = 10e-6
"""Fixed cost of one all-reduce (launch + synchronisation), paid twice per layer per
forward pass under tensor parallelism. Assumption: small-message all-reduce latency on
NVLink is of the order of 10 µs (NCCL; vLLM's custom all-reduce is somewhat faster); the
same figure is used for PCIe and other links, where it is optimistic."""

ALLREDUCES_PER_LAYER = 2
"""Megatron-style tensor parallelism: one all-reduce after the attention output projection
and one after the MLP down projection (Shoeybi et al., 2019, "Megatron-LM", section 3)."""
