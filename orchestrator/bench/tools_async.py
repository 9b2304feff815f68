"""``legato bench tools``, part (b): asynchronous against synchronous function calling (AsyncLM)
on a BFCL-like workload, in virtual time through the real AsyncLM runtime, and a small real case
on llama-server with emulated interrupts.

What runs and what is simulated (``measure_async``):

- **Real**: the runtime of ``dsl.gen(..., async_calls=True)`` (``orchestrator.runtime.
  _asynclm``): the CML frame parser over the streamed text, each tool started the moment its
  arguments are complete, tools running as tasks in the call's task group, ``[INTR]`` delivery
  at safe boundaries or at ``[TRAP][END]``, the orchestrator's admission; the tools are real
  ``@dsl.tool`` coroutines.
- **Simulated**: the model and the tools' durations. ``VirtualCMLModel`` plays a model that
  writes a fixed CML script (the calls of the case, then a final answer) through the same
  session interface as the embedded engine (``session()``: text pieces, ``inject``, a pause
  after ``[TRAP][END]``), one token per step, each step costing what the engine's roofline
  ``CostModel`` says for a batch of one (an 8B model on one H100: ~5.8 ms per decoded token);
  the prompt costs one prefill step and every injection one extra step over its tokens. Text is
  split into tokens at words, digit triples, brackets and punctuation (about what a BPE
  tokenizer does with such frames). A tool sleeps a duration drawn from a lognormal
  distribution (median ``TOOL_MEDIAN_S`` = 1 s, sigma ``TOOL_SIGMA`` = 0.5, clipped to
  [0.05, 10] s). Everything runs under trio's mock clock, so the figures are virtual seconds.

The workload (BFCL "parallel multiple"-like): each case asks for 2 to 4 independent calls
(uniformly) to eight BFCL-style functions (weather, stock price, currency, hotels, directions,
tax, restaurants, news) with drawn arguments, then a final answer of 20 to 60 words (about
twice as many of the virtual model's tokens, which count the spaces between words). Each case
runs three ways on the same calls and durations: ``sync`` (the model writes one call, then
``[TRAP][END]`` and waits for it, then the next: synchronous calling), ``async_trap`` (every
call, then one trap) and ``async_each`` (the same text; each result is injected as it returns).

The AsyncLM latency model for the same calls (no runtime overhead, injections free): with
``P`` the prefill, ``g(t)`` the decode time of the text up to ``t``, ``r_i`` the moment call
``i``'s arguments are complete and ``E_i`` its duration,
``sync = P + g(all) + sum_i max(0, r_i + E_i - trap_i)`` (each call waited for at the trap
right after it, ``trap_i``) and ``async = P + max(g(up to the trap), max_i(r_i + E_i)) +
g(final answer)``.
Targets: ``bfcl_async_speedup_vs_sync`` (mean sync latency over mean async latency, aim 1.6,
higher) and ``bfcl_async_gap_to_latency_model`` (mean of measured async / model async - 1,
aim 0.10, lower).

``measure_llamacpp`` runs the random-weight ``tiny`` model on llama-server over HTTP with
emulated interrupts (the stream closed at ``[TRAP][END]`` or at a delivery, resumed through
the completions endpoint with the frames appended) and reports its timings.
"""

from __future__ import annotations

import contextlib
import math
import re
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import numpy as np

import dsl
from dsl import cml
from orchestrator.backends import Completion, LLMRequest
from orchestrator.backends.local import SessionText
from orchestrator.bench._report import Target
from orchestrator.bench._virtual import run_virtual
from orchestrator.engine import CostModel
from orchestrator.runtime import Orchestrator

__all__ = [
    "TOOL_MEDIAN_S",
    "TOOL_SIGMA",
    "Case",
    "VirtualCMLModel",
    "bfcl_workload",
    "latency_model",
    "measure_async",
    "measure_llamacpp",
    "tokenize",
]

TOOL_MEDIAN_S = 1.0
TOOL_SIGMA = 0.5
_TOKEN = re.compile(r"\[|\]|[A-Za-z]+|[0-9]{1,3}|\s+|[^\sA-Za-z0-9\[\]]")
PROMPT_TOKENS = 400
"""Tokens of a case's prompt (system prompt with the protocol and eight tools, and the
request): one prefill step."""


def tokenize(text: str) -> list[str]:
    """The virtual model's tokens: words, digit triples, brackets, punctuation, whitespace."""
    return _TOKEN.findall(text)


# -- the workload ----------------------------------------------------------------------------------
# fmt: off
_CITIES = (
    "Paris", "London", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Quito", "Sydney", "Toronto",
    "Madrid", "Nairobi", "Seoul", "Rome", "Dublin", "Lisbon", "Hanoi", "Berlin", "Vienna",
    "Prague", "Bogota", "Manila", "Lagos", "Boston", "Denver", "Austin", "Seattle", "Chicago",
    "Osaka", "Zurich",
)
_SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA", "META", "IBM", "ORCL", "INTC", "AMD")
_CURRENCIES = ("EUR", "USD", "GBP", "JPY", "NOK", "CHF", "CAD", "AUD")
_CUISINES = ("thai", "italian", "sushi", "mexican", "indian", "greek", "vegan", "korean")
_TOPICS = ("energy", "elections", "football", "science", "markets", "climate", "space", "health")
_STATES = ("CA", "NY", "TX", "WA", "FL", "IL", "MA", "CO")
_MODES = ("driving", "walking", "transit", "cycling")
# fmt: on


def _date(rng: np.random.Generator) -> str:
    return f"2024-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


_ARGS: dict[str, Callable[[np.random.Generator], tuple[Any, ...]]] = {
    "get_weather": lambda r: (_pick(r, _CITIES), _date(r)),
    "get_stock_price": lambda r: (_pick(r, _SYMBOLS), _date(r)),
    "convert_currency": lambda r: (
        int(r.integers(10, 5000)),
        _pick(r, _CURRENCIES),
        _pick(r, _CURRENCIES),
    ),
    "search_hotels": lambda r: (_pick(r, _CITIES), _date(r), int(r.integers(1, 8))),
    "get_directions": lambda r: (_pick(r, _CITIES), _pick(r, _CITIES), _pick(r, _MODES)),
    "calculate_tax": lambda r: (int(r.integers(20, 400)) * 1000, _pick(r, _STATES), 2024),
    "find_restaurants": lambda r: (_pick(r, _CITIES), _pick(r, _CUISINES), int(r.integers(1, 9))),
    "get_news": lambda r: (_pick(r, _TOPICS), _date(r)),
}
_FINAL_TEXT = (
    "the forecast says it will be mild while the price moved a little and the hotel has rooms "
    "so you can go ahead with the plan as discussed"
)


@dataclass(frozen=True, slots=True)
class Case:
    """One request of the workload: its calls (tool, arguments, duration in seconds) and the
    length of its final answer in words."""

    id: str
    calls: tuple[tuple[str, tuple[Any, ...], float], ...]
    final_words: int

    def frames(self) -> list[str]:
        """The call frames, ``[CALL] i [HEAD] fn(args) [END]``, numbered from 1."""
        return [
            f"{cml.CALL} {i} {cml.HEAD} {fn}({', '.join(cml.render_value(a) for a in args)}) "
            f"{cml.END}"
            for i, (fn, args, _) in enumerate(self.calls, 1)
        ]

    def final(self) -> str:
        """The final answer's text."""
        vocabulary = _FINAL_TEXT.split()
        words = [vocabulary[i % len(vocabulary)] for i in range(self.final_words)]
        return " " + " ".join(words) + "."

    def script(self, mode: str) -> str:
        """The CML text the virtual model writes: ``sync`` traps after each call, the async
        modes after all of them."""
        head = f"Case {self.id}: let me check. "
        if mode == "sync":
            return head + "".join(f"{f} {cml.TRAP_FRAME} " for f in self.frames()) + self.final()
        return head + " ".join(self.frames()) + f" {cml.TRAP_FRAME}" + self.final()


def bfcl_workload(n: int, *, seed: int = 0) -> list[Case]:
    """``n`` BFCL-like cases (see the module docstring), drawn from ``seed``. Arguments are
    distinct across the whole workload, so a call's duration is found from its arguments."""
    rng = np.random.default_rng(seed)
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    cases = []
    names = sorted(_ARGS)
    for i in range(n):
        calls = []
        for _ in range(int(rng.integers(2, 5))):
            while True:
                fn = names[int(rng.integers(len(names)))]
                args = _ARGS[fn](rng)
                if (fn, args) not in seen:
                    seen.add((fn, args))
                    break
            duration = float(np.clip(rng.lognormal(math.log(TOOL_MEDIAN_S), TOOL_SIGMA), 0.05, 10))
            calls.append((fn, args, duration))
        cases.append(Case(f"c{i}", tuple(calls), int(rng.integers(20, 61))))
    return cases


def _tools(durations: dict[tuple[str, tuple[Any, ...]], float]) -> list[dsl.Tool[Any]]:
    """The eight BFCL-style tools; each sleeps the duration drawn for its arguments."""

    def make(name: str, params: str) -> dsl.Tool[Any]:
        async def call(*args: Any) -> str:
            await anyio.sleep(durations[(name, tuple(args))])
            return f"{name} result for {', '.join(map(str, args))}"

        # a signature the protocol can describe and check: (city: str, date: str) -> str
        annotations = {"str": str, "int": int, "float": float}
        call.__signature__ = _signature(params, annotations)  # type: ignore[attr-defined]
        call.__name__ = name
        call.__doc__ = f"BFCL-style {name.replace('_', ' ')}."
        return dsl.Tool(call, name=name, timeout=30.0)

    sigs = {
        "get_weather": "city:str date:str",
        "get_stock_price": "symbol:str date:str",
        "convert_currency": "amount:float source:str target:str",
        "search_hotels": "city:str check_in:str nights:int",
        "get_directions": "origin:str destination:str mode:str",
        "calculate_tax": "income:float state:str year:int",
        "find_restaurants": "city:str cuisine:str party_size:int",
        "get_news": "topic:str date:str",
    }
    return [make(n, sigs[n]) for n in sorted(sigs)]


def _signature(params: str, types: dict[str, type]) -> Any:
    import inspect

    return inspect.Signature(
        [
            inspect.Parameter(
                p.split(":")[0],
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=types[p.split(":")[1]],
            )
            for p in params.split()
        ],
        return_annotation=str,
    )


# -- the virtual model -----------------------------------------------------------------------------
class VirtualCMLModel:
    """A backend that plays a model writing a scripted CML text, in virtual time, through the
    embedded engine's session interface (``session``: pieces, ``inject``, a pause after
    ``[TRAP][END]``). ``scripts`` maps a marker found in the request's text to the script.
    Each token costs ``cost.step_time`` for a batch of one at its context length; the prompt
    is one prefill step of ``prompt_tokens``; an injection costs one step over its tokens."""

    name = "virtual-cml"

    def __init__(
        self,
        scripts: dict[str, str],
        *,
        cost: CostModel | None = None,
        prompt_tokens: int = PROMPT_TOKENS,
    ) -> None:
        self.scripts = scripts
        self.cost = cost or CostModel()
        self.prompt_tokens = prompt_tokens

    def _script(self, request: LLMRequest) -> str:
        text = request.text
        for marker, script in self.scripts.items():
            if marker in text:
                return script
        raise KeyError(f"no script for the request {text[-80:]!r}")

    @contextlib.asynccontextmanager
    async def session(
        self, request: LLMRequest, *, pause: Sequence[str] = ()
    ) -> AsyncIterator[_VirtualSession]:
        """A generation of the script that matches ``request``."""
        yield _VirtualSession(self, self._script(request), tuple(pause))

    async def complete(self, request: LLMRequest) -> Completion:
        """The whole script (for calls without tools)."""
        return Completion(text=self._script(request))

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        """The script in one piece (for calls without tools)."""
        yield self._script(request)

    async def aclose(self) -> None:
        """Nothing to release."""


class _VirtualSession:
    def __init__(self, model: VirtualCMLModel, script: str, pause: tuple[str, ...]) -> None:
        self.model = model
        self.tokens = tokenize(script)
        self.pause = pause
        self.n = 0
        self.context = 0
        self.pending = 0  # injected tokens not yet computed
        self.paused = False
        self.resumed = anyio.Event()
        self.completion: Completion | None = None

    def _step(self, tokens: int) -> float:
        """The duration of a step that computes ``tokens`` more tokens of the context."""
        self.context += tokens
        return self.model.cost.step_time(tokens=tokens, context_tokens=self.context)

    async def __aiter__(self) -> AsyncIterator[SessionText]:
        await anyio.sleep(self._step(self.model.prompt_tokens))
        text = ""
        for tok in self.tokens:
            if self.paused:  # resumed: one step computes the injected tokens and samples
                self.paused = False
                await anyio.sleep(self._step(self.pending))
            else:
                await anyio.sleep(self._step(1))
                if self.pending:  # injected while the step ran: one more step for them
                    await anyio.sleep(self._step(self.pending))
            self.pending = 0
            self.n += 1
            text += tok
            yield SessionText(tok, self.n)
            if any(text.endswith(p) for p in self.pause):
                self.paused = True
                self.resumed = anyio.Event()
                await self.resumed.wait()
        self.completion = Completion(
            text=text, prompt_tokens=self.model.prompt_tokens, completion_tokens=self.n
        )

    async def inject(self, text: str, *, after: int | None = None) -> bool:
        if after is not None and after != self.n:
            return False
        # the token written last is computed with them (1 when nothing is injected)
        self.pending += len(tokenize(text)) + (1 if self.paused else 0)
        self.resumed.set()
        return True


# -- the latency model -----------------------------------------------------------------------------
def latency_model(case: Case, mode: str, *, cost: CostModel | None = None) -> float:
    """AsyncLM's latency for ``case`` (``mode``: ``sync`` or ``async``; see the module
    docstring): decode times from ``cost`` for the virtual model's tokens at batch one, tools
    as long as drawn, each starting when its arguments are complete; no runtime overhead and
    no cost for delivering results."""
    cost = cost or CostModel()
    ctx = PROMPT_TOKENS
    t = cost.step_time(tokens=PROMPT_TOKENS, context_tokens=PROMPT_TOKENS)
    durations = [d for _, _, d in case.calls]
    ready: list[float] = []  # when each call's arguments were complete
    written = ""
    in_frame = False
    for tok in tokenize(case.script("sync" if mode == "sync" else "async")):
        ctx += 1
        t += cost.step_time(tokens=1, context_tokens=ctx)
        written += tok
        if written.endswith(cml.CALL):
            in_frame = True
        elif tok == ")" and in_frame:
            ready.append(t)
            in_frame = False
        elif written.endswith(cml.TRAP_FRAME):
            # sync: the trap after each call waits for it; async: the one trap waits for all
            t = max(t, *(r + d for r, d in zip(ready, durations, strict=False)))
    return t


# -- running it ------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Outcome:
    latency: dict[tuple[str, str], float] = field(default_factory=dict)
    head_start: list[float] = field(default_factory=list)
    injections: dict[str, int] = field(default_factory=dict)


async def _run_all(
    cases: Sequence[Case],
    modes: Sequence[str],
    cost: CostModel,
    advance: Callable[[], None] | None,
) -> _Outcome:
    durations = {(fn, args): d for c in cases for fn, args, d in c.calls}
    tools = _tools(durations)
    outcome = _Outcome()

    @dsl.program
    async def bfcl_case(case_id: str, interrupt: Literal["each", "trap"]) -> str:
        return await dsl.gen(
            "Case {{case_id}}: answer the user's request with the tools.",
            case_id=case_id,
            tools=tools,
            async_calls=True,
            interrupt=interrupt,
            max_tokens=1024,
            name="agent",
        )

    for mode in modes:
        scripts = {f"Case {c.id}:": c.script(mode) for c in cases}
        model = VirtualCMLModel(scripts, cost=cost)
        interrupt: Literal["each", "trap"] = "each" if mode == "async_each" else "trap"
        outcome.injections[mode] = 0
        async with Orchestrator(model, max_in_flight=len(cases) + 1) as orch:

            async def one(
                case: Case,
                orch: Orchestrator = orch,
                mode: str = mode,
                interrupt: Literal["each", "trap"] = interrupt,
            ) -> None:
                start = anyio.current_time()
                handle = await orch.submit(bfcl_case, case.id, interrupt)
                out = await handle.result()
                outcome.latency[(case.id, mode)] = anyio.current_time() - start
                assert isinstance(out, cml.CMLText)
                assert len(out.calls) == len(case.calls), out.transcript
                assert all(c.error is None for c in out.calls), out.calls
                outcome.injections[mode] += out.transcript.count(cml.INTR)
                if advance is not None:
                    advance()
                if mode == "async_trap":
                    outcome.head_start.extend(
                        c.frame_end - c.started
                        for c in out.calls
                        if c.frame_end is not None and c.started is not None
                    )

            async with anyio.create_task_group() as tg:
                for case in cases:
                    tg.start_soon(one, case)
    return outcome


def measure_async(
    *,
    calls: int | None = None,
    seed: int = 0,
    quick: bool = False,
    advance: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Target]]:
    """Async against synchronous calling on ``calls`` BFCL-like cases (when not given: 200,
    ``quick`` 30), in virtual time; see the module docstring for what is simulated.
    ``advance`` is called once per case and mode (``3 * cases`` times: for a progress bar).

    Returns:
        One row per mode (``sync``, ``async_trap``, ``async_each``: mean, p50 and p95 latency
        in virtual seconds, the latency model's mean, the measured/model ratio, ``[INTR]``
        frames delivered) and one summary row (the speedup, the mean head start that
        Conveyor gave each call, the wall time), and the targets
        ``bfcl_async_speedup_vs_sync`` and ``bfcl_async_gap_to_latency_model``.
    """
    n = (30 if quick else 200) if calls is None else calls
    if n < 1:
        raise ValueError(f"calls must be >= 1, got {n}")
    cases = bfcl_workload(n, seed=seed)
    cost = CostModel()
    modes = ("sync", "async_trap", "async_each")
    start = time.perf_counter()
    outcome: _Outcome = run_virtual(
        _run_all, cases, modes, cost, advance, what="legato bench tools", seed=seed
    )
    wall = time.perf_counter() - start
    rows: list[dict[str, Any]] = []
    means: dict[str, float] = {}
    gaps: dict[str, float] = {}
    for mode in modes:
        measured = [outcome.latency[(c.id, mode)] for c in cases]
        model_mode = "sync" if mode == "sync" else "async"
        bound = [latency_model(c, model_mode, cost=cost) for c in cases]
        means[mode] = statistics.fmean(measured)
        gaps[mode] = statistics.fmean(m / b for m, b in zip(measured, bound, strict=True)) - 1
        rows.append(
            {
                "mode": mode,
                "cases": n,
                "calls": sum(len(c.calls) for c in cases),
                "mean_s": round(means[mode], 3),
                "p50_s": round(statistics.median(measured), 3),
                "p95_s": round(_percentile(measured, 95), 3),
                "model_mean_s": round(statistics.fmean(bound), 3),
                "gap_to_model": round(gaps[mode], 4),
                "intr_frames": outcome.injections[mode],
            }
        )
    speedup = means["sync"] / means["async_trap"]
    rows.append(
        {
            "mode": "summary",
            "speedup_async_trap_vs_sync": round(speedup, 3),
            "speedup_async_each_vs_sync": round(means["sync"] / means["async_each"], 3),
            "model_speedup": round(
                statistics.fmean(latency_model(c, "sync", cost=cost) for c in cases)
                / statistics.fmean(latency_model(c, "async", cost=cost) for c in cases),
                3,
            ),
            "conveyor_head_start_ms": round(1000 * statistics.fmean(outcome.head_start), 2),
            "tool_median_s": TOOL_MEDIAN_S,
            "tool_sigma": TOOL_SIGMA,
            "wall_s": round(wall, 2),
        }
    )
    targets = {
        "bfcl_async_speedup_vs_sync": Target(speedup, 1.6, "higher"),
        "bfcl_async_gap_to_latency_model": Target(gaps["async_trap"], 0.10, "lower"),
    }
    return rows, targets


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


# -- a real engine ---------------------------------------------------------------------------------
def measure_llamacpp(
    *, seeds: Sequence[int] = (4, 10, 19, 30), max_tokens: int = 160
) -> list[dict[str, Any]]:
    """A small real case: the random-weight ``tiny`` model on llama-server (started here) is
    asked, once per seed and policy, to call two tools from its text, with emulated interrupts
    (the stream closed at ``[TRAP][END]`` or at a delivery and resumed through the completions
    endpoint with the frames appended; the grammar sent as GBNF). The default seeds are ones at
    which the random model does call or trap (found by trying); whatever it does is reported.

    One row per run: wall-clock latency, calls made, traps, requests resumed (one per trap and
    per delivery between traps), seconds spent in tools, errors, and whether it ended inside a
    frame. Empty when llama-server is not built (``python3 -m integrations.llamacpp build``).
    """
    from integrations.llamacpp import LlamaServer, find
    from orchestrator.backends import OpenAICompatible
    from orchestrator.engine import cached_model
    from orchestrator.errors import ConstraintViolation

    binary = find()
    if binary is None:
        return []

    @dsl.tool(timeout=5)
    async def lookup(key: int) -> int:
        """A remote lookup (0.2 s)."""
        await anyio.sleep(0.2)
        return key % 97

    @dsl.tool(timeout=5)
    def add(a: int, b: int) -> int:
        """a + b"""
        return a + b

    @dsl.program
    async def agent(seed: int, interrupt: Literal["each", "trap"]) -> str:
        return await dsl.gen(
            "Find the two values and add them.",
            tools=[lookup, add],
            async_calls=True,
            interrupt=interrupt,
            max_tokens=max_tokens,
            seed=seed,
            temperature=1.0,
            name="agent",
        )

    rows: list[dict[str, Any]] = []

    async def go(url: str) -> None:
        backend = OpenAICompatible(url, dialect="llamacpp")
        async with Orchestrator(backend) as orch:
            policies: tuple[Literal["each", "trap"], ...] = ("trap", "each")
            for interrupt in policies:
                for seed in seeds:
                    start = time.perf_counter()
                    handle = await orch.submit(agent, seed, interrupt)
                    row: dict[str, Any] = {"engine": "llama-server", "policy": interrupt}
                    row["seed"] = seed
                    try:
                        out = await handle.result()
                    except ConstraintViolation:
                        row.update(wall_s=round(time.perf_counter() - start, 3), unclosed=True)
                        rows.append(row)
                        continue
                    assert isinstance(out, cml.CMLText)
                    text = out.transcript
                    groups = re.finditer(r"(?:\[INTR\] .*? \[END\])+", text)
                    between = sum(not text[: g.start()].endswith(cml.TRAP_FRAME) for g in groups)
                    traps = re.sub(r"\[INTR\] .*? \[END\]", "", text).count(cml.TRAP_FRAME)
                    row.update(
                        wall_s=round(time.perf_counter() - start, 3),
                        calls=len(out.calls),
                        traps=traps,
                        resumed_requests=traps + between,
                        tool_s=round(
                            sum(
                                (c.ended or 0) - (c.started or 0)
                                for c in out.calls
                                if c.started is not None
                            ),
                            3,
                        ),
                        errors=sum(c.error is not None for c in out.calls),
                        unclosed=False,
                    )
                    rows.append(row)

    gguf = cached_model("tiny").gguf
    with LlamaServer(gguf, binary=binary, parallel=2, threads=2) as server:
        anyio.run(go, server.url)
    return rows
