"""Sampling one token from logits: greedy, temperature, top-k, top-p, seeds, log-probabilities,
and banned or allowed token sets."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["SampleParams", "Sampled", "sample"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleParams:
    """How to generate: the engine's own sampling settings.

    Attributes:
        max_tokens: tokens to generate at most.
        temperature: 0 for greedy.
        top_p, top_k: nucleus and top-k filtering (1.0 / 0 to disable).
        seed: makes sampling reproducible for this request.
        stop: strings that end the generation (not included in the text).
        min_tokens: tokens to generate before an end token may be chosen.
        ignore_eos: never choose an end token (fixed-length generations).
        logprobs: how many top alternatives to report per token (None: none).
        logit_bias: added to the logits of these token ids before sampling (OpenAI's
            ``logit_bias``; -100 all but bans a token, +100 all but forces it).
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    min_tokens: int = 0
    ignore_eos: bool = False
    logprobs: int | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Sampled:
    """The chosen token, its log-probability, and the top alternatives if asked for."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


def _log_softmax(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    m = x.max()
    out: npt.NDArray[np.float64] = x - m - np.log(np.exp(x - m).sum())
    return out


def sample(
    logits: npt.NDArray[np.float32],
    params: SampleParams,
    rng: np.random.Generator,
    *,
    banned: Collection[int] = (),
    allowed: Collection[int] | None = None,
) -> Sampled:
    """Choose the next token from one row of logits."""
    x = logits.astype(np.float64)
    for token, bias in params.logit_bias:
        x[token] += bias
    if banned:
        x[list(banned)] = -np.inf
    if allowed is not None:
        keep = np.full_like(x, -np.inf)
        idx = list(allowed)
        keep[idx] = x[idx]
        x = keep
    logp = _log_softmax(x)
    top: tuple[tuple[int, float], ...] = ()
    if params.logprobs:
        k = min(params.logprobs, x.size)
        best = np.argpartition(-logp, k - 1)[:k]
        best = best[np.argsort(-logp[best])]
        top = tuple((int(i), float(logp[i])) for i in best)
    if params.temperature <= 0.0:
        token = int(np.argmax(x))
        return Sampled(token, float(logp[token]), top)
    z = x / params.temperature
    if params.top_k and params.top_k < z.size:
        kth = np.partition(z, -params.top_k)[-params.top_k]
        z[z < kth] = -np.inf
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs)
        cum = np.cumsum(probs[order])
        cut = int(np.searchsorted(cum, params.top_p)) + 1
        mask = np.zeros_like(probs, dtype=bool)
        mask[order[:cut]] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    token = int(rng.choice(probs.size, p=probs))
    return Sampled(token, float(logp[token]), top)
