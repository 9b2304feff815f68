"""The cost model of virtual time: how long one engine step would take on a GPU-class engine.

A roofline estimate. One step reads every weight once and the KV of every token in the batch's
context, and does ``2 * params`` FLOPs per token computed; it takes the larger of the memory
time and the compute time, plus a fixed per-step overhead (scheduling, kernel launches, sampling).

Default constants: an 8B llama (Llama-3-8B: 8.03e9 parameters, 32 layers, 8 KV heads of 128, bf16)
on one H100 SXM:

- weights: 8.03e9 params * 2 bytes = 16.1 GB; HBM bandwidth 3.35 TB/s -> 4.8 ms per step
  whatever the batch (decode is memory-bound: at batch 1, ~200 tokens/s);
- KV per token: 2 (K and V) * 32 layers * 8 heads * 128 dims * 2 bytes = 131 kB; reading the
  context of the batch adds 39 ns per context token per step;
- compute: 2 * 8.03e9 FLOPs per token at 989 TFLOP/s dense bf16 and 50% utilisation -> 32 us per
  token computed, so prefill of 1,000 tokens costs ~33 ms and decode turns compute-bound near
  batch 150;
- overhead: 1 ms per step.

These match published H100 figures for 8B models within tens of percent, which is all a
scheduling benchmark needs: what matters is that prefill is expensive, decode is cheap per
token and batches well, and long contexts cost memory bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CostModel"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CostModel:
    """Seconds per engine step as a function of the work in it (see the module docstring)."""

    params: float = 8.03e9
    weight_bytes: float = 16.06e9
    kv_bytes_per_token: float = 131_072.0
    hbm_bytes_per_s: float = 3.35e12
    flops_per_s: float = 989e12
    utilisation: float = 0.5
    step_overhead_s: float = 0.001

    def step_time(self, *, tokens: int, context_tokens: int) -> float:
        """Seconds for a step that computes ``tokens`` new tokens (prefill and decode together)
        over a batch whose sequences hold ``context_tokens`` tokens in all."""
        if tokens <= 0:
            return 0.0
        memory = (self.weight_bytes + self.kv_bytes_per_token * context_tokens) / (
            self.hbm_bytes_per_s
        )
        compute = 2.0 * self.params * tokens / (self.flops_per_s * self.utilisation)
        return self.step_overhead_s + max(memory, compute)
