"""The llama model in torch, computing what the embedded engine's numpy forward pass and
llama.cpp compute on the exported file: RMSNorm, rotary embeddings, grouped-query attention,
SwiGLU, and (for tied presets) the token embedding as the output matrix.

Rotary embeddings are applied in Hugging Face's rotate-half layout (one ``cat`` instead of
strided pairs: cheaper on the CPU); ``gguf_weights`` permutes Q and K rows into llama.cpp's
adjacent-pair order (``hf_to_gguf_qk``, as llama.cpp's converter does), which computes the same
function. Each row of a batch is one sequence starting at position 0 (padding after it cannot
change it under the causal mask), so the fast causal attention kernel runs without a mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F

from orchestrator.engine._gguf import GGUFModel
from orchestrator.engine._make import Preset, gguf_to_hf_qk, hf_to_gguf_qk

__all__ = ["TorchLlama", "preset_of"]


class _RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _Block(nn.Module):
    def __init__(self, p: Preset) -> None:
        super().__init__()
        d, hd = p.d_model, p.head_dim
        self.p = p
        self.attn_norm = _RMSNorm(d, p.rms_eps)
        self.q = nn.Linear(d, p.n_heads * hd, bias=False)
        self.k = nn.Linear(d, p.n_kv_heads * hd, bias=False)
        self.v = nn.Linear(d, p.n_kv_heads * hd, bias=False)
        self.o = nn.Linear(p.n_heads * hd, d, bias=False)
        self.ffn_norm = _RMSNorm(d, p.rms_eps)
        self.gate = nn.Linear(d, p.d_ffn, bias=False)
        self.up = nn.Linear(d, p.d_ffn, bias=False)
        self.down = nn.Linear(p.d_ffn, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        p = self.p
        b, n, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(b, n, p.n_heads, p.head_dim).transpose(1, 2)
        k = self.k(h).view(b, n, p.n_kv_heads, p.head_dim).transpose(1, 2)
        v = self.v(h).view(b, n, p.n_kv_heads, p.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if p.n_kv_heads != p.n_heads:
            rep = p.n_heads // p.n_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, n, -1))
        h = self.ffn_norm(x)
        out: torch.Tensor = x + self.down(F.silu(self.gate(h)) * self.up(h))
        return out


class TorchLlama(nn.Module):
    """A llama model of shape ``preset``, initialised from ``seed`` (N(0, 0.02); residual
    projections scaled by ``1/sqrt(2 n_layers)``; norms 1)."""

    def __init__(self, preset: Preset, *, seed: int = 0) -> None:
        super().__init__()
        self.preset = preset
        self.embed = nn.Embedding(preset.vocab_size, preset.d_model)
        self.layers = nn.ModuleList(_Block(preset) for _ in range(preset.n_layers))
        self.norm = _RMSNorm(preset.d_model, preset.rms_eps)
        self.output: nn.Linear | None = None
        if not preset.tied_embeddings:
            self.output = nn.Linear(preset.d_model, preset.vocab_size, bias=False)
        hd = preset.head_dim
        inv = 1.0 / (preset.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        angles = torch.outer(torch.arange(preset.context_length, dtype=torch.float64), inv)
        angles = torch.cat((angles, angles), dim=-1)  # HF's rotate-half layout
        self.rope_cos: torch.Tensor
        self.rope_sin: torch.Tensor
        self.register_buffer("rope_cos", angles.cos().float(), persistent=False)
        self.register_buffer("rope_sin", angles.sin().float(), persistent=False)
        gen = torch.Generator().manual_seed(seed)
        scale = 1.0 / math.sqrt(2 * preset.n_layers)
        for name, param in self.named_parameters():
            if param.ndim < 2:
                continue
            std = 0.02 * (scale if name.endswith(("o.weight", "down.weight")) else 1.0)
            with torch.no_grad():
                param.copy_(torch.randn(param.shape, generator=gen) * std)

    def forward(self, ids: torch.Tensor, select: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for token ids ``(B, L)`` (each row one sequence from position 0): ``(B, L,
        vocab)``, or ``(N, vocab)`` at the positions where the boolean ``select`` ``(B, L)``
        is True (the output layer then runs on those rows only)."""
        n = ids.shape[1]
        x = self.embed(ids)
        cos, sin = self.rope_cos[:n], self.rope_sin[:n]
        for layer in self.layers:
            x = layer(x, cos, sin)
        if select is not None:
            x = x[select]
        h = self.norm(x)
        w = self.embed.weight if self.output is None else self.output.weight
        logits: torch.Tensor = h @ w.T
        return logits

    def gguf_weights(self) -> dict[str, npt.NDArray[np.float32]]:
        """The weights under GGUF tensor names, in GGUF's layout (float32; Q and K rows
        permuted into llama.cpp's order)."""
        out = {}
        for name, p in self._gguf_params():
            w = np.ascontiguousarray(p.detach().cpu().float().numpy())
            out[name] = self._permute(name, w, hf_to_gguf_qk)
        return out

    def load_gguf_weights(self, weights: Mapping[str, npt.NDArray[Any]]) -> None:
        """Set every parameter from GGUF-named arrays (the inverse of ``gguf_weights``)."""
        with torch.no_grad():
            for name, p in self._gguf_params():
                w = self._permute(name, np.asarray(weights[name], dtype=np.float32), gguf_to_hf_qk)
                p.copy_(torch.from_numpy(np.array(w, dtype=np.float32, copy=True)))

    def _permute(
        self, name: str, w: npt.NDArray[np.float32], fn: Callable[..., Any]
    ) -> npt.NDArray[np.float32]:
        if name.endswith("attn_q.weight"):
            return np.ascontiguousarray(fn(w, self.preset.n_heads))
        if name.endswith("attn_k.weight"):
            return np.ascontiguousarray(fn(w, self.preset.n_kv_heads))
        return w

    def _gguf_params(self) -> list[tuple[str, torch.Tensor]]:
        out: list[tuple[str, torch.Tensor]] = [("token_embd.weight", self.embed.weight)]
        for i, layer in enumerate(self.layers):
            assert isinstance(layer, _Block)
            out += [
                (f"blk.{i}.attn_norm.weight", layer.attn_norm.weight),
                (f"blk.{i}.attn_q.weight", layer.q.weight),
                (f"blk.{i}.attn_k.weight", layer.k.weight),
                (f"blk.{i}.attn_v.weight", layer.v.weight),
                (f"blk.{i}.attn_output.weight", layer.o.weight),
                (f"blk.{i}.ffn_norm.weight", layer.ffn_norm.weight),
                (f"blk.{i}.ffn_gate.weight", layer.gate.weight),
                (f"blk.{i}.ffn_up.weight", layer.up.weight),
                (f"blk.{i}.ffn_down.weight", layer.down.weight),
            ]
        out.append(("output_norm.weight", self.norm.weight))
        if self.output is not None:
            out.append(("output.weight", self.output.weight))
        return out

    @torch.no_grad()
    def greedy(self, prompt: list[int], max_tokens: int, stop: set[int]) -> list[int]:
        """Greedy decoding without a KV cache (a reference for the engines, not fast)."""
        ids = list(prompt)
        out: list[int] = []
        for _ in range(max_tokens):
            nxt = int(self(torch.tensor([ids]))[0, -1].argmax())
            out.append(nxt)
            if nxt in stop:
                break
            ids.append(nxt)
        return out


def preset_of(model: GGUFModel) -> Preset:
    """The shape of a loaded GGUF model, as a ``Preset`` (tied when the file has no output
    matrix of its own)."""
    c = model.config
    tied = model.tensors.get("output.weight") is model.tensors.get("token_embd.weight")
    return Preset(
        name=model.name,
        vocab_size=c.vocab_size,
        n_layers=c.n_layers,
        d_model=c.dim,
        n_heads=c.n_heads,
        n_kv_heads=c.n_kv_heads,
        d_ffn=c.ffn_dim,
        context_length=c.context_length,
        rope_theta=c.rope_theta,
        rms_eps=c.rms_eps,
        tied_embeddings=tied,
    )
