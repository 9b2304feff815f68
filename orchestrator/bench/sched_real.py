"""``legato bench sched --real N``: the scheduling comparison on real hardware, small.

Two ``llama-server`` replicas (llama.cpp, the ``small`` preset with random weights, 2 slots and
one thread each, on 127.0.0.1) behind ``Replicas`` (the locality balancer), driven by the same
``drive`` as the virtual-time benchmark: ``N`` programs of the ``react`` workload (the same
seeded generator, prompt text scaled by ``PROMPT_SCALE``) arrive as a Poisson process on the
wall clock, per policy, through a real ``Orchestrator`` whose admission queue holds the calls
beyond ``max_in_flight`` = 4 (the replicas' slots): llama-server takes no priority hint, so
the policy acts only on which ready call goes next. Each policy gets two servers of its own,
started for it: llama-server keeps finished prompts in RAM, so servers that an earlier policy
used would hand a later one the same programs' prompts cached. Generations run to
``max_tokens`` (random weights rarely write the end token), the tools sleep on the wall clock
as the workload says.

The same arrivals then run in virtual time on two virtual engines shaped like the real ones
(2 sequences each, the same admission limit, batches in arrival order since llama-server takes
no hint), with step costs fitted to the real replicas (``fit_cost``: llama-server's own prefill
and decode timings on a prompt of the workload's kind of words), and the report compares the
two orderings of the policies by mean completion time: the share of policy pairs that both
runs order the same way (1.0: identical orderings) and whether they agree on the best policy.
The fit is coarse (a decode step costs the same at batch 1 and 2; prefill is linear in tokens),
so the absolute times differ somewhat; the ordering is what is compared.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

import anyio
from rich.console import Console

from orchestrator.backends import OpenAICompatible, Replicas
from orchestrator.bench._report import Report, Target, progress
from orchestrator.bench.sched import _ratio, drive, simulate
from orchestrator.bench.workloads import WORKLOADS, make_workload
from orchestrator.engine import CostModel
from orchestrator.errors import ConfigError
from orchestrator.scheduler import POLICIES

__all__ = ["PROMPT_SCALE", "REAL_POLICIES", "REAL_RATE", "fit_cost", "real_run"]

REAL_POLICIES = ("fcfs", "program_fcfs", "plas", "atlas", "mlfq", "adaptive")
"""Policies the real run compares by default (``slo`` needs a workload with SLOs)."""

REAL_RATE = 1.2
"""Programs/s that keep two CPU replicas of ``small`` busy enough for a queue to form."""

PROMPT_SCALE = 0.1
"""The real run's ``react`` prompts are a tenth of the virtual ones' words: the made-up words
cost ~7.5 tokens each in the ``small`` model's tokenizer, so full-length prompts (~720 words a
call on average, up to ~1,600: ~5,400 and ~12,000 tokens) would make a CPU run of prefills.
Steps, decode lengths and tool durations are the workload's."""

CONTEXT = 8192
"""Tokens per slot: the ``small`` model says 2,048 (its GGUF's ``context_length``), which the
longest scaled programs (40 steps) pass; the servers are told 8,192 (``--override-kv``). Its
weights are random, so positions past its nominal context cost nothing in meaning."""

SLOTS = 2
"""Slots (parallel sequences) per replica."""


def _pair_agreement(a: dict[str, float], b: dict[str, float]) -> float:
    """The share of policy pairs that ``a`` and ``b`` order the same way (ties count as
    agreeing only with ties)."""
    pairs = list(itertools.combinations(sorted(a), 2))
    if not pairs:
        return math.nan
    same = sum((a[x] > a[y]) - (a[x] < a[y]) == (b[x] > b[y]) - (b[x] < b[y]) for x, y in pairs)
    return same / len(pairs)


def fit_cost(
    base_url: str, *, words: int = 80, decode: int = 32
) -> tuple[CostModel, dict[str, float]]:
    """A virtual-time cost model fitted to the llama-server at ``base_url``, in the virtual
    engine's units (one token per word): a prompt of ``words`` made-up words like the
    workload's, decoded for ``decode`` tokens after a warm-up, timed by the server itself
    (``timings`` of ``/completion``). A step costs ``max(decode step, new tokens x prefill time
    per word)``. Also returns the measured figures."""
    import httpx

    prompt = " ".join(f"fit{i}.{i % 7}" for i in range(words))
    body = {"prompt": prompt, "n_predict": decode, "temperature": 0, "cache_prompt": False}
    with httpx.Client(timeout=120, trust_env=False) as client:
        client.post(f"{base_url}/completion", json=body).raise_for_status()  # warm-up
        r = client.post(f"{base_url}/completion", json=body)
        r.raise_for_status()
    t = r.json()["timings"]
    per_word = t["prompt_ms"] / 1000.0 / words
    step = t["predicted_ms"] / 1000.0 / max(1, t["predicted_n"])
    cost = CostModel(
        params=1.0,
        weight_bytes=step,
        kv_bytes_per_token=0.0,
        hbm_bytes_per_s=1.0,
        flops_per_s=2.0 / per_word,
        utilisation=1.0,
        step_overhead_s=0.0,
    )
    figures = {
        "prefill_tokens_per_word": t["prompt_n"] / words,
        "prefill_ms_per_word": per_word * 1000.0,
        "decode_ms_per_token": step * 1000.0,
    }
    return cost, figures


def real_run(
    programs: int = 16,
    *,
    workload: str = "react",
    policies: Sequence[str] = REAL_POLICIES,
    rate: float | None = None,
    seed: int = 0,
    model: str = "small",
    console: Console | None = None,
) -> Report:
    """Run ``programs`` programs of ``workload`` per policy on two real llama-server replicas,
    then the same arrivals in virtual time; the report's rows (one per policy and clock) and
    targets (``real_vs_virtual_pair_agreement``, aim 1.0; ``real_best_is_virtual_best``).

    Raises:
        ConfigError: unknown workload or policy, or llama-server is not built.
    """
    from integrations.llamacpp import LlamaServer, find
    from orchestrator.engine import cached_model

    console = console or Console(stderr=True)
    if workload != "react":
        known = "" if workload in WORKLOADS else "unknown "
        raise ConfigError(
            f"legato bench sched --real runs the react workload only, not the {known}workload "
            f"{workload!r}: pass --workload react"
        )
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:  # before the servers start and the first policies run for minutes
        raise ConfigError(
            f"legato bench sched --real: unknown policies {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(POLICIES))}"
        )
    binary = find()
    if binary is None:
        raise ConfigError(
            "legato bench sched --real needs llama-server: python3 -m integrations.llamacpp build"
        )
    rate = REAL_RATE if rate is None else rate
    names = list(dict.fromkeys(["fcfs", *policies]))  # fcfs first, each policy once
    arrivals = make_workload(
        workload, programs=programs, rate=rate, seed=seed, prompt_scale=PROMPT_SCALE
    )
    gguf = cached_model(model).gguf
    in_flight = 2 * SLOTS
    real: dict[str, dict[str, Any]] = {}

    def replicas() -> list[LlamaServer]:
        return [
            LlamaServer(
                gguf,
                binary=binary,
                parallel=SLOTS,
                threads=1,
                ctx=SLOTS * CONTEXT,
                extra_args=("--override-kv", f"llama.context_length=int:{CONTEXT}"),
            )
            for _ in range(2)
        ]

    # The cost fit on a server of its own, so no policy's servers are warmed up by it.
    with replicas()[0] as probe:
        cost, fitted = fit_cost(probe.base)
    with progress(console=console) as bar:
        for name in names:
            task = bar.add_task(f"real {workload} {name}", total=len(arrivals))
            # Fresh servers for each policy: llama-server keeps finished prompts in a cache in
            # RAM (--cache-ram), so a policy run on servers an earlier one used would find the
            # same programs' prompts cached and start ahead.
            servers = replicas()
            with servers[0], servers[1]:

                async def one_policy(
                    policy: str = name,
                    task_id: Any = task,
                    urls: tuple[str, ...] = tuple(s.url for s in servers),
                ) -> dict[str, Any]:
                    backends = [OpenAICompatible(u, dialect="llamacpp") for u in urls]
                    async with backends[0], backends[1]:  # ours to close: Replicas leaves them
                        return await drive(
                            arrivals,
                            Replicas(backends, balancer="locality"),
                            policy=policy,
                            max_in_flight=in_flight,
                            on_done=functools.partial(bar.advance, task_id),
                        )

                real[name] = anyio.run(one_policy)
    virtual: dict[str, dict[str, Any]] = {}
    with progress(console=console) as bar:
        for name in names:
            task = bar.add_task(f"virtual {workload} {name}", total=len(arrivals))
            virtual[name] = simulate(
                arrivals,
                policy=name,
                replicas=2,
                max_batch=SLOTS,
                cost=cost,
                engine_policy="fcfs",
                max_in_flight=in_flight,
                on_done=functools.partial(bar.advance, task),
            )
    rows = []
    for clock, runs in (("real", real), ("virtual", virtual)):
        base = runs["fcfs"]
        for name in names:
            m = runs[name]
            rows.append(
                {
                    "clock": clock,
                    "policy": name,
                    "mean_s": m["mean_s"],
                    "p50_s": m["p50_s"],
                    "p99_s": m["p99_s"],
                    "mean_x": _ratio(m["mean_s"], base["mean_s"]),
                    "p50_x": _ratio(m["p50_s"], base["p50_s"]),
                    "failed": m["failed"],
                }
            )
    real_means = {n: float(real[n]["mean_s"]) for n in names}
    virtual_means = {n: float(virtual[n]["mean_s"]) for n in names}
    best_real = min(real_means, key=real_means.__getitem__)
    best_virtual = min(virtual_means, key=virtual_means.__getitem__)
    config = {
        "workload": workload,
        "programs": programs,
        "rate": rate,
        "seed": seed,
        "engine": f"2 x llama-server ({model}, random weights, {SLOTS} slots, 1 thread each)",
        "balancer": "locality",
        "max_in_flight": in_flight,
        "virtual_cost": {k: round(v, 3) for k, v in fitted.items()},
        "best_real": best_real,
        "best_virtual": best_virtual,
        "first_error": next((m["first_error"] for m in real.values() if m["first_error"]), None),
    }
    targets = {
        "real_vs_virtual_pair_agreement": Target(
            _pair_agreement(real_means, virtual_means), 1.0, "higher"
        ),
        "real_best_is_virtual_best": Target(float(best_real == best_virtual), 1.0, "higher"),
    }
    return Report("sched-real", config, rows, targets)
