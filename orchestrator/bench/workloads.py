"""Seeded workload generators for the scheduling benchmark (``legato bench sched``): agent
programs of the shapes the papers measure, arriving as a Poisson process.

A workload is a list of ``Arrival``s: when a program arrives (seconds after the start), which DSL
program runs with which arguments, its SLO if it has one, and its kind. ``make_workload(name,
programs=N, rate=R, seed=S)`` builds one by name (``WORKLOADS``).

The programs are real DSL programs meant for a virtual-time engine (``virtual_engine`` behind a
``LocalBackend``), which counts one token per whitespace-separated word and always decodes
``max_tokens`` tokens. So a prompt of ``n`` words is an ``n``-token prefill and ``max_tokens`` is
the decode length. Prompts are made of words that are unique to a program (``<tag>h0 <tag>h1
...``), or shared by all programs where real ones share text (a ReAct system prompt listing the
tools, a Text-to-SQL database schema), so the engine's prefix cache sees what it would see in
production. A multi-turn program's prompt is the previous prompt, then the text of the previous
turn repeated, then the new text: consecutive turns share a prefix, which a KV pin keeps cached.
Tools are ``async`` tools that sleep on the anyio clock for a duration drawn when the workload is
generated.

Determinism: everything comes from ``random.Random`` seeded with strings (stable across runs and
machines). Arrival gaps come from their own stream, so changing ``rate`` only rescales the arrival
times: the programs are the same, which is what a load sweep needs.

Sizes are in words (= tokens); each ``Arrival.calls`` lists the calls its program will make
(stage, prefill, decode), for checking a workload against its parameters.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio

import dsl
from orchestrator.engine import CostModel

__all__ = [
    "WORKLOADS",
    "Arrival",
    "CallShape",
    "ChatSpec",
    "ChatTurn",
    "DagSpec",
    "ReactSpec",
    "ReactTurn",
    "Text2SQLSpec",
    "TreeSpec",
    "chat",
    "chat_workload",
    "dag",
    "dag_workload",
    "make_workload",
    "mixed_workload",
    "react",
    "react_workload",
    "text2sql",
    "text2sql_workload",
    "tree",
    "tree_workload",
]


# -- arrivals and shapes --------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class CallShape:
    """One LLM call a program will make.

    Attributes:
        stage: the call's node name (``turn``, ``step``, ``expand``, ``map``, ``reduce``,
            ``schema_linking``, ``candidate``, ``correction``, ``evaluation``).
        prefill: prompt length in words (= virtual tokens), not counting the chat role word the
            backend adds.
        decode: tokens generated (``max_tokens``; virtual generations always run to it).
    """

    stage: str
    prefill: int
    decode: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Arrival:
    """One program of a workload.

    Attributes:
        time: seconds after the workload's start at which the program is submitted.
        program: the DSL program to run.
        args: its positional arguments.
        slo: seconds within which the program should complete (from arrival), or None.
        kind: the workload kind it comes from (``chat``, ``react``, ...; in ``mixed``, the
            kind drawn for it).
        calls: the LLM calls it will make, in program order.
    """

    time: float
    program: dsl.Program[Any, Any]
    args: tuple[Any, ...]
    slo: float | None
    kind: str
    calls: tuple[CallShape, ...] = ()


def _words(prefix: str, n: int) -> str:
    """``n`` distinct words ``prefix0 prefix1 ...``: ``n`` virtual tokens."""
    return " ".join(f"{prefix}{i}" for i in range(n))


def _lognormal(rng: random.Random, mean: float, sigma: float) -> float:
    """A lognormal draw with the given mean (not median) and log-space spread ``sigma``."""
    return rng.lognormvariate(math.log(mean) - sigma * sigma / 2.0, sigma)


def _count(rng: random.Random, mean: float, sigma: float, lo: int, hi: int) -> int:
    """A lognormal draw rounded to an integer in ``[lo, hi]``."""
    return min(hi, max(lo, round(_lognormal(rng, mean, sigma))))


def _streams(name: str, seed: int) -> tuple[random.Random, random.Random]:
    """Independent streams for arrival gaps and for program contents."""
    gaps = random.Random(f"legato/{name}/{seed}/arrivals")
    return gaps, random.Random(f"legato/{name}/{seed}/programs")


def _arrival_times(rng: random.Random, programs: int, rate: float) -> list[float]:
    """Poisson arrivals: exponential gaps of mean ``1 / rate`` seconds, the first at 0."""
    if programs < 0:
        raise ValueError(f"programs must be >= 0, got {programs}")
    if not rate > 0:
        raise ValueError(f"rate must be > 0 programs/s, got {rate}")
    times: list[float] = []
    t = 0.0
    for i in range(programs):
        if i:
            t += rng.expovariate(1.0) / rate
        times.append(t)
    return times


# -- tools ----------------------------------------------------------------------------------
@dsl.tool(expected_duration=1.0)
async def user_think(seconds: float) -> str:
    """The user reading an answer and typing the next message (chat think time)."""
    await anyio.sleep(seconds)
    return ""


@dsl.tool(expected_duration=0.5)
async def search(seconds: float) -> str:
    """A web or document search (ReAct tool; quick, modest spread)."""
    await anyio.sleep(seconds)
    return ""


@dsl.tool(expected_duration=2.0)
async def run_code(seconds: float) -> str:
    """Running code in a sandbox (ReAct tool; slow, wide spread)."""
    await anyio.sleep(seconds)
    return ""


@dsl.tool(expected_duration=1.0)
async def call_api(seconds: float) -> str:
    """An external API call (ReAct tool; usually fast, heavy tail)."""
    await anyio.sleep(seconds)
    return ""


REACT_TOOLS: Final[dict[str, tuple[dsl.Tool[str], float, float, float]]] = {
    # name: (tool, weight, mean seconds, lognormal sigma)
    "search": (search, 0.5, 0.5, 0.5),
    "run_code": (run_code, 0.2, 2.0, 0.8),
    "call_api": (call_api, 0.3, 1.0, 1.0),
}
"""ReAct's tools: how often each is picked and its lognormal duration (mean, sigma)."""


# -- chat -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ChatTurn:
    """One turn: ``think`` seconds of user time before it (0 for the first), ``user`` new words,
    ``decode`` answer tokens, and ``carry`` words of the answer repeated in later prompts."""

    think: float
    user: int
    decode: int
    carry: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatSpec:
    """A conversation: a program-unique ``header`` (system prompt) and its turns."""

    tag: str
    header: int
    turns: tuple[ChatTurn, ...]

    def calls(self) -> tuple[CallShape, ...]:
        """The conversation's calls (see ``chat``)."""
        out: list[CallShape] = []
        context = self.header
        for turn in self.turns:
            context += turn.user
            out.append(CallShape(stage="turn", prefill=context, decode=turn.decode))
            context += turn.carry
        return tuple(out)


@dsl.program
async def chat(spec: ChatSpec) -> int:
    """A multi-turn conversation: each turn's prompt is the previous prompt, then the part of
    the previous answer the user quotes, then the new message; between turns the user thinks."""
    parts = [_words(f"{spec.tag}h", spec.header)]
    for k, turn in enumerate(spec.turns):
        if k and turn.think > 0:
            await user_think(turn.think)
        parts.append(_words(f"{spec.tag}u{k}.", turn.user))
        await dsl.gen("{{c}}", c=" ".join(parts), max_tokens=turn.decode, name="turn")
        if turn.carry:
            parts.append(_words(f"{spec.tag}a{k}.", turn.carry))
    return len(spec.turns)


def _chat_spec(rng: random.Random, tag: str, think_mean: float) -> ChatSpec:
    # Lognormal turns, sigma 1: median 4, p99 ~50 (capped at 48); the mean 7.1 before rounding
    # and the cap gives ~6.7 calls per program.
    n = _count(rng, 7.1, 1.0, 1, 48)
    turns = []
    for k in range(n):
        decode = _count(rng, 277.0, 0.8, 8, 2048)
        turns.append(
            ChatTurn(
                think=_lognormal(rng, think_mean, 0.5) if k else 0.0,
                user=_count(rng, 14.0, 0.8, 2, 200),
                decode=decode,
                carry=min(decode, 12),
            )
        )
    return ChatSpec(tag=tag, header=_count(rng, 64.0, 0.3, 16, 256), turns=tuple(turns))


def chat_workload(
    programs: int, rate: float, seed: int, *, think_mean: float = 1.0
) -> list[Arrival]:
    """Multi-turn chat, ShareGPT-like (the ``chat`` workload of issue 5, with the figures it
    gives for ShareGPT conversations as Autellix uses them): ~6.7 LLM calls per program, ~256
    prefill and ~277 decode tokens per call.

    - turns per conversation: lognormal, sigma 1 (heavy-tailed: median 4, capped at 48),
      mean ~6.7;
    - each prompt: a program-unique system header (~64 words), then every earlier user message
      and the first 12 words of every earlier answer, then the new user message (~14 words,
      lognormal): the conversation grows each turn and shares the previous prompt as a prefix.
      Over all calls the mean prompt is ~256 words (long conversations weigh most);
    - decode: lognormal, mean 277, sigma 0.8, in [8, 2048];
    - between turns the user thinks: a ``user_think`` tool sleeping lognormal(``think_mean``,
      0.5) seconds (our choice: short, so the engine sees the conversation come back soon).
    - no SLO.
    """
    gaps, rng = _streams("chat", seed)
    times = _arrival_times(gaps, programs, rate)
    out = []
    for i, t in enumerate(times):
        spec = _chat_spec(rng, f"c{seed}n{i}", think_mean)
        out.append(
            Arrival(time=t, program=chat, args=(spec,), slo=None, kind="chat", calls=spec.calls())
        )
    return out


# -- react ----------------------------------------------------------------------------------
REACT_SYSTEM_WORDS: Final = 160
"""Words of the ReAct system prompt (the tools' descriptions), shared by every program."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReactTurn:
    """One reasoning step: ``decode`` tokens of thought and action, then (except on the last
    step) ``tool`` running ``seconds`` and returning ``observation`` words."""

    decode: int
    tool: str | None
    seconds: float
    observation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReactSpec:
    """A ReAct task: ``task`` program-unique words after the shared system prompt of
    ``system`` words, then steps."""

    tag: str
    task: int
    turns: tuple[ReactTurn, ...]
    system: int = REACT_SYSTEM_WORDS
    carry: float = 1.0

    def carried(self, turn: ReactTurn) -> int:
        """Words of ``turn``'s own text that later prompts repeat: its decode length, times
        ``carry`` (1 but in a scaled workload)."""
        return turn.decode if self.carry == 1.0 else max(1, round(turn.decode * self.carry))

    def calls(self) -> tuple[CallShape, ...]:
        """The task's calls (see ``react``)."""
        out: list[CallShape] = []
        context = self.system + self.task
        for turn in self.turns:
            out.append(CallShape(stage="step", prefill=context, decode=turn.decode))
            context += self.carried(turn) + (turn.observation if turn.tool else 0)
        return tuple(out)


@dsl.program
async def react(spec: ReactSpec) -> int:
    """A ReAct tool loop: think and act, run the tool, read the observation, repeat. Each
    prompt is the previous one plus the step's own text and the tool's observation."""
    parts = [_words("react.sys", spec.system), _words(f"{spec.tag}t", spec.task)]
    for k, turn in enumerate(spec.turns):
        await dsl.gen("{{c}}", c=" ".join(parts), max_tokens=turn.decode, name="step")
        parts.append(_words(f"{spec.tag}a{k}.", spec.carried(turn)))
        if turn.tool is not None:
            await REACT_TOOLS[turn.tool][0](turn.seconds)
            parts.append(_words(f"{spec.tag}o{k}.", turn.observation))
    return len(spec.turns)


def _react_spec(rng: random.Random, tag: str) -> ReactSpec:
    n = _count(rng, 10.8, 0.5, 2, 40)
    names = list(REACT_TOOLS)
    weights = [REACT_TOOLS[k][1] for k in names]
    turns = []
    for k in range(n):
        decode = _count(rng, 34.0, 0.4, 4, 256)
        if k == n - 1:  # the last step answers: no tool
            turns.append(ReactTurn(decode=decode, tool=None, seconds=0.0, observation=0))
            continue
        tool = rng.choices(names, weights)[0]
        _, _, mean_s, sigma = REACT_TOOLS[tool]
        turns.append(
            ReactTurn(
                decode=decode,
                tool=tool,
                seconds=_lognormal(rng, mean_s, sigma),
                observation=_count(rng, 40.0, 0.6, 4, 400),
            )
        )
    return ReactSpec(tag=tag, task=_count(rng, 100.0, 0.4, 10, 800), turns=tuple(turns))


def _scaled(spec: ReactSpec, scale: float) -> ReactSpec:
    """``spec`` with its prompt text (system prompt, task, observations, the earlier steps'
    text it repeats) ``scale`` times as long (at least one word each); decode lengths, steps
    and tools unchanged."""

    def words(n: int) -> int:
        return max(1, round(n * scale))

    turns = tuple(
        dataclasses.replace(t, observation=words(t.observation) if t.tool else 0)
        for t in spec.turns
    )
    return dataclasses.replace(
        spec, task=words(spec.task), system=words(spec.system), turns=turns, carry=scale
    )


def react_workload(
    programs: int, rate: float, seed: int, *, prompt_scale: float = 1.0
) -> list[Arrival]:
    """ReAct tool loops, BFCL-like (the ``react`` workload of issue 5, with the figures it gives
    for BFCL agent traces, the kind Continuum evaluates on): ~10.8 LLM calls per program, ~735
    prefill tokens (growing each turn), ~34 decode tokens per call, a tool call between
    consecutive calls.

    - steps: lognormal, mean 10.8, sigma 0.5, in [2, 40];
    - prompt: a 160-word system prompt shared by all programs (the tools' descriptions), a
      program-unique task (~100 words), then per earlier step its thought/action (its decode
      length) and the tool's observation (~40 words): mean ~735 words over all calls;
    - decode: lognormal, mean 34, sigma 0.4;
    - tools (``REACT_TOOLS``; durations are our choice, sub-second to a few seconds):
      ``search`` (p=0.5, lognormal mean 0.5 s, sigma 0.5), ``run_code`` (p=0.2, mean 2.0 s,
      sigma 0.8), ``call_api`` (p=0.3, mean 1.0 s, sigma 1.0: heavy tail). Each is its own
      tool, so a per-tool duration history (the KV TTL predictor) has something to learn;
    - no SLO.

    ``prompt_scale`` shortens (or lengthens) the prompt text of every program, for engines
    whose tokenizers spend several tokens on each of these made-up words (the real-hardware
    run, ``orchestrator.bench.sched_real``); the draws are the same.
    """
    if not prompt_scale > 0:
        raise ValueError(f"prompt_scale must be > 0, not {prompt_scale!r}")
    gaps, rng = _streams("react", seed)
    out = []
    for i, t in enumerate(_arrival_times(gaps, programs, rate)):
        spec = _react_spec(rng, f"r{seed}n{i}")
        if prompt_scale != 1.0:
            spec = _scaled(spec, prompt_scale)
        out.append(
            Arrival(time=t, program=react, args=(spec,), slo=None, kind="react", calls=spec.calls())
        )
    return out


# -- tree -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class TreeSpec:
    """A search tree: ``parents[i]`` is node ``i``'s parent (-1 for the root; parents come
    first), ``decode[i]`` its output tokens, ``task`` the program-unique task words, ``branch``
    the words that tell siblings apart."""

    tag: str
    task: int
    branch: int
    parents: tuple[int, ...]
    decode: tuple[int, ...]

    def prefills(self) -> list[int]:
        """Each node's prompt length: its parent's prompt, the parent's output, branch words."""
        out: list[int] = []
        for i, p in enumerate(self.parents):
            assert p < i, "parents come before their children"
            out.append(self.task if p < 0 else out[p] + self.decode[p] + self.branch)
        return out

    def calls(self) -> tuple[CallShape, ...]:
        """The tree's calls, parents first (see ``tree``)."""
        return tuple(
            CallShape(stage="expand", prefill=n, decode=d)
            for n, d in zip(self.prefills(), self.decode, strict=True)
        )


@dsl.program
async def tree(spec: TreeSpec) -> int:
    """LATS-like tree search: every node expands its children in parallel the moment it is done
    (each child's prompt is its parent's prompt, the parent's output, and the child's branch);
    the whole tree is in the graph from the start."""
    texts: list[str] = []
    nodes: list[dsl.Var[str]] = []
    leaves: set[int] = set(range(len(spec.parents)))
    for i, p in enumerate(spec.parents):
        if p < 0:
            text = _words(f"{spec.tag}t", spec.task)
            nodes.append(dsl.gen("{{c}}", c=text, max_tokens=spec.decode[i], name="expand"))
        else:
            leaves.discard(p)
            text = " ".join(
                (
                    texts[p],
                    _words(f"{spec.tag}a{p}.", spec.decode[p]),
                    _words(f"{spec.tag}b{i}.", spec.branch),
                )
            )
            nodes.append(
                dsl.gen(
                    "{{c}}{{parent}}",
                    c=text,
                    parent=nodes[p],
                    max_tokens=spec.decode[i],
                    name="expand",
                )
            )
        texts.append(text)
    for i in sorted(leaves):
        await nodes[i]
    return len(nodes)


def _tree_spec(rng: random.Random, tag: str, depth: int) -> TreeSpec:
    parents = [-1]
    level = [0]
    for _ in range(depth):
        nxt = []
        for node in level:
            for _ in range(4 if rng.random() < 0.25 else 3):
                parents.append(node)
                nxt.append(len(parents) - 1)
        level = nxt
    decode = tuple(_count(rng, 64.0, 0.4, 8, 256) for _ in parents)
    return TreeSpec(
        tag=tag,
        task=_count(rng, 200.0, 0.3, 20, 800),
        branch=8,
        parents=tuple(parents),
        decode=decode,
    )


def tree_workload(programs: int, rate: float, seed: int, *, depth: int = 4) -> list[Arrival]:
    """LATS-like tree search (the ``tree`` workload of issue 5, which gives ~160 LLM calls per
    program with wide parallel fan-out for LATS programs).

    - a tree of ``depth`` levels below the root (4); each node has 3 children, or 4 with
      probability 0.25 (mean branching 3.25): 1 + 3.25 + ... + 3.25^4 = ~161 calls per
      program, all children of a node launched in parallel when it finishes;
    - prompt (our choice): a program-unique task (~200 words), then for each ancestor its
      output and 8 branch words: ~455 words on average, siblings sharing their parent's prompt;
    - decode: lognormal, mean 64, sigma 0.4 (our choice: a thought or an action);
    - no SLO.
    """
    gaps, rng = _streams("tree", seed)
    out = []
    for i, t in enumerate(_arrival_times(gaps, programs, rate)):
        spec = _tree_spec(rng, f"t{seed}n{i}", depth)
        out.append(
            Arrival(time=t, program=tree, args=(spec,), slo=None, kind="tree", calls=spec.calls())
        )
    return out


# -- dag (map-reduce) -----------------------------------------------------------------------
DAG_INSTRUCTION_WORDS: Final = 40


@dataclass(frozen=True, slots=True, kw_only=True)
class DagSpec:
    """A map-reduce job: one map call per chunk (``chunks[i]`` words, ``map_decode[i]`` tokens),
    then a reduce over all map outputs (``reduce_decode`` tokens)."""

    tag: str
    chunks: tuple[int, ...]
    map_decode: tuple[int, ...]
    reduce_decode: int

    def calls(self) -> tuple[CallShape, ...]:
        """The maps, then the reduce (see ``dag``)."""
        maps = [
            CallShape(stage="map", prefill=DAG_INSTRUCTION_WORDS + c, decode=d)
            for c, d in zip(self.chunks, self.map_decode, strict=True)
        ]
        reduce = CallShape(
            stage="reduce",
            prefill=DAG_INSTRUCTION_WORDS + sum(self.map_decode),
            decode=self.reduce_decode,
        )
        return (*maps, reduce)


@dsl.program
async def dag(spec: DagSpec) -> int:
    """Map-reduce summarisation: summarise every chunk in parallel, then combine the summaries."""
    inst = _words("dag.map", DAG_INSTRUCTION_WORDS)
    maps = [
        dsl.gen("{{c}}", c=f"{inst} {_words(f'{spec.tag}c{i}.', n)}", max_tokens=d, name="map")
        for i, (n, d) in enumerate(zip(spec.chunks, spec.map_decode, strict=True))
    ]
    summaries = " ".join(_words(f"{spec.tag}s{i}.", d) for i, d in enumerate(spec.map_decode))
    text = f"{_words('dag.reduce', DAG_INSTRUCTION_WORDS)} {summaries}"
    await dsl.gen("{{c}}{{maps}}", c=text, maps=maps, max_tokens=spec.reduce_decode, name="reduce")
    return len(maps)


def dag_workload(programs: int, rate: float, seed: int) -> list[Arrival]:
    """Map-reduce over a document (the ``dag`` workload of issue 5; Parrot's map-reduce
    summarisation app): N parallel map calls, then one reduce that reads all their outputs.

    - N: uniform in [4, 16] (mean 10), so 11 calls per program on average;
    - map: a 40-word instruction shared by all programs + a program-unique chunk (lognormal,
      mean 400 words, sigma 0.3); decode lognormal mean 100, sigma 0.4;
    - reduce: a shared 40-word instruction + every map's output (N x ~100 words); decode
      lognormal mean 200, sigma 0.4;
    - sizes are our choice (chunks of a few hundred tokens, summaries a quarter of that);
    - no SLO.
    """
    gaps, rng = _streams("dag", seed)
    out = []
    for i, t in enumerate(_arrival_times(gaps, programs, rate)):
        spec = _dag_spec(rng, f"d{seed}n{i}")
        out.append(
            Arrival(time=t, program=dag, args=(spec,), slo=None, kind="dag", calls=spec.calls())
        )
    return out


# -- text2sql -------------------------------------------------------------------------------
TEXT2SQL_DATABASES: Final = 8
"""Databases the questions are about; each has one schema, shared by its questions' prompts."""
TEXT2SQL_CANDIDATES: Final = 4
TEXT2SQL_INSTRUCTION_WORDS: Final = 30
TEXT2SQL_SLO_SCALE: Final = 3.0
"""Default SLO: this many times the program's latency alone on the reference engine."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Text2SQLSpec:
    """One Text-to-SQL question: its database (``db``, ``schema`` words shared by the
    database's questions), ``question`` words, the linked schema (``linked`` words) and each
    stage's decode length."""

    tag: str
    db: int
    schema: int
    question: int
    linked: int
    link_decode: int
    candidate_decode: tuple[int, ...]
    correction_decode: int
    evaluation_decode: int

    def calls(self) -> tuple[CallShape, ...]:
        """schema_linking, the candidates, correction, evaluation (see ``text2sql``)."""
        inst = TEXT2SQL_INSTRUCTION_WORDS
        cands = tuple(
            CallShape(stage="candidate", prefill=inst + self.linked + self.question, decode=d)
            for d in self.candidate_decode
        )
        return (
            CallShape(
                stage="schema_linking",
                prefill=inst + self.schema + self.question,
                decode=self.link_decode,
            ),
            *cands,
            CallShape(
                stage="correction",
                prefill=inst + self.question + self.linked + sum(self.candidate_decode),
                decode=self.correction_decode,
            ),
            CallShape(
                stage="evaluation",
                prefill=inst + self.question + self.correction_decode,
                decode=self.evaluation_decode,
            ),
        )

    def alone_latency(self, cost: CostModel | None = None) -> float:
        """Seconds the program takes alone on an idle engine (``cost``, default the reference
        8B/H100 model): each stage's prefill, then its decode steps at batch 1 (the parallel
        candidates as one batch)."""
        cost = cost or CostModel()

        def stage(prefills: Sequence[int], decode: int) -> float:
            n = sum(prefills)
            t = cost.step_time(tokens=n, context_tokens=n)
            b = len(prefills)
            # Decode steps: every sequence in the batch adds one token per step.
            for k in range(decode):
                t += cost.step_time(tokens=b, context_tokens=n + b * k)
            return t

        shapes = self.calls()
        cands = shapes[1 : 1 + len(self.candidate_decode)]
        return (
            stage([shapes[0].prefill], shapes[0].decode)
            + stage([c.prefill for c in cands], max(c.decode for c in cands))
            + stage([shapes[-2].prefill], shapes[-2].decode)
            + stage([shapes[-1].prefill], shapes[-1].decode)
        )


@dsl.program
async def text2sql(spec: Text2SQLSpec) -> str:
    """HEXGEN-TEXT2SQL's pipeline: schema linking, parallel SQL candidates, self-correction,
    evaluation. Stage names are node names (candidates: ``candidate``, ``candidate_1``, ...)."""
    tag = spec.tag
    question = _words(f"{tag}q", spec.question)
    link = dsl.gen(
        "{{c}}",
        c=" ".join(
            (
                _words("sql.link", TEXT2SQL_INSTRUCTION_WORDS),
                _words(f"sql.db{spec.db}.", spec.schema),
                question,
            )
        ),
        max_tokens=spec.link_decode,
        name="schema_linking",
    )
    linked = _words(f"{tag}l", spec.linked)
    cands = [
        dsl.gen(
            "{{c}}{{link}}",
            c=" ".join((_words(f"sql.cand{i}.", TEXT2SQL_INSTRUCTION_WORDS), linked, question)),
            link=link,
            max_tokens=d,
            name="candidate",
        )
        for i, d in enumerate(spec.candidate_decode)
    ]
    drafts = " ".join(_words(f"{tag}d{i}.", d) for i, d in enumerate(spec.candidate_decode))
    fixed = dsl.gen(
        "{{c}}{{cands}}",
        c=" ".join((_words("sql.fix", TEXT2SQL_INSTRUCTION_WORDS), question, linked, drafts)),
        cands=cands,
        max_tokens=spec.correction_decode,
        name="correction",
    )
    verdict = dsl.gen(
        "{{c}}{{sql}}",
        c=" ".join(
            (
                _words("sql.eval", TEXT2SQL_INSTRUCTION_WORDS),
                question,
                _words(f"{tag}f", spec.correction_decode),
            )
        ),
        sql=fixed,
        max_tokens=spec.evaluation_decode,
        name="evaluation",
    )
    return await verdict


def _text2sql_spec(rng: random.Random, tag: str, schemas: Sequence[int]) -> Text2SQLSpec:
    db = rng.randrange(len(schemas))
    return Text2SQLSpec(
        tag=tag,
        db=db,
        schema=schemas[db],
        question=_count(rng, 30.0, 0.4, 5, 200),
        linked=_count(rng, 150.0, 0.4, 20, 1000),
        link_decode=_count(rng, 50.0, 0.4, 8, 300),
        candidate_decode=tuple(
            _count(rng, 120.0, 0.4, 16, 600) for _ in range(TEXT2SQL_CANDIDATES)
        ),
        correction_decode=_count(rng, 100.0, 0.4, 16, 600),
        evaluation_decode=_count(rng, 16.0, 0.4, 2, 100),
    )


def _schemas(seed: int) -> list[int]:
    rng = random.Random(f"legato/text2sql/{seed}/schemas")
    return [_count(rng, 800.0, 0.4, 100, 3000) for _ in range(TEXT2SQL_DATABASES)]


def text2sql_workload(
    programs: int, rate: float, seed: int, *, slo_scale: float = TEXT2SQL_SLO_SCALE
) -> list[Arrival]:
    """Multi-stage Text-to-SQL with an SLO (the ``text2sql`` workload of issue 5, after
    HEXGEN-TEXT2SQL): ``schema_linking`` -> 4 parallel ``candidate`` calls -> ``correction``
    -> ``evaluation``, 7 calls per program.

    - schema_linking: a shared instruction (30 words) + the database's schema (8 databases,
      ~800 words each, shared by that database's questions) + the question (~30 words);
      decode ~50;
    - candidate (x4, parallel): a per-candidate shared instruction + the linked schema (~150
      words, program-unique) + the question; decode ~120;
    - correction: instruction + question + linked schema + the 4 candidates' text; decode ~100;
    - evaluation: instruction + question + the corrected SQL; decode ~16;
    - sizes are lognormal (sigma 0.4) around those means, our choice;
    - SLO: ``slo_scale`` (default 3) times the program's latency alone on the reference engine
      (``Text2SQLSpec.alone_latency``), so every program's SLO is reachable when the engine is
      idle and its tightness is one knob (our choice of definition; the scale is what an SLO
      sweep varies).
    """
    gaps, rng = _streams("text2sql", seed)
    schemas = _schemas(seed)
    cost = CostModel()
    out = []
    for i, t in enumerate(_arrival_times(gaps, programs, rate)):
        spec = _text2sql_spec(rng, f"s{seed}n{i}", schemas)
        out.append(
            Arrival(
                time=t,
                program=text2sql,
                args=(spec,),
                slo=slo_scale * spec.alone_latency(cost),
                kind="text2sql",
                calls=spec.calls(),
            )
        )
    return out


# -- mixed ----------------------------------------------------------------------------------
MIXED_WEIGHTS: Final[dict[str, float]] = {
    "chat": 0.3,
    "react": 0.3,
    "text2sql": 0.2,
    "dag": 0.15,
    "tree": 0.05,
}
"""How often each kind arrives in ``mixed``."""


def mixed_workload(
    programs: int, rate: float, seed: int, *, weights: dict[str, float] | None = None
) -> list[Arrival]:
    """A seeded mix of the other workloads (the ``mixed`` workload of issue 5), one Poisson
    stream of ``rate`` programs/s in all; each arrival's kind is drawn from ``weights``
    (default ``MIXED_WEIGHTS``: chat 0.3, react 0.3, text2sql 0.2, dag 0.15, tree 0.05, our
    choice), and its program from that kind's generator with the same parameters.
    text2sql arrivals carry their SLO; the others none.
    """
    weights = dict(MIXED_WEIGHTS if weights is None else weights)
    unknown = set(weights) - set(_SINGLE)
    if unknown:
        raise ValueError(f"unknown kinds in weights: {sorted(unknown)}")
    if not all(w >= 0 and math.isfinite(w) for w in weights.values()) or not sum(weights.values()):
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {weights}")
    gaps, rng = _streams("mixed", seed)
    schemas = _schemas(seed)
    cost = CostModel()
    kinds = list(weights)
    out = []
    for i, t in enumerate(_arrival_times(gaps, programs, rate)):
        kind = rng.choices(kinds, [weights[k] for k in kinds])[0]
        tag = f"m{seed}n{i}"
        slo: float | None = None
        spec: Any
        program: dsl.Program[Any, Any]
        match kind:
            case "chat":
                spec, program = _chat_spec(rng, tag, 1.0), chat
            case "react":
                spec, program = _react_spec(rng, tag), react
            case "tree":
                spec, program = _tree_spec(rng, tag, 4), tree
            case "dag":
                spec, program = _dag_spec(rng, tag), dag
            case _:
                spec, program = _text2sql_spec(rng, tag, schemas), text2sql
                slo = TEXT2SQL_SLO_SCALE * spec.alone_latency(cost)
        out.append(
            Arrival(time=t, program=program, args=(spec,), slo=slo, kind=kind, calls=spec.calls())
        )
    return out


def _dag_spec(rng: random.Random, tag: str) -> DagSpec:
    n = rng.randint(4, 16)
    return DagSpec(
        tag=tag,
        chunks=tuple(_count(rng, 400.0, 0.3, 50, 2000) for _ in range(n)),
        map_decode=tuple(_count(rng, 100.0, 0.4, 8, 400) for _ in range(n)),
        reduce_decode=_count(rng, 200.0, 0.4, 16, 800),
    )


_SINGLE: Final[dict[str, Callable[..., list[Arrival]]]] = {
    "chat": chat_workload,
    "react": react_workload,
    "tree": tree_workload,
    "dag": dag_workload,
    "text2sql": text2sql_workload,
}

WORKLOADS: Final[tuple[str, ...]] = (*_SINGLE, "mixed")
"""The workload names ``make_workload`` knows."""


def make_workload(
    name: str, *, programs: int, rate: float, seed: int, **options: Any
) -> list[Arrival]:
    """The workload ``name`` (one of ``WORKLOADS``): ``programs`` programs arriving as a
    Poisson process of ``rate`` programs/s, drawn from ``seed``; the same arguments always give
    the same arrivals. ``options`` go to the workload's generator (``think_mean`` for chat,
    ``depth`` for tree, ``slo_scale`` for text2sql, ``weights`` for mixed)."""
    if name == "mixed":
        return mixed_workload(programs, rate, seed, **options)
    try:
        gen = _SINGLE[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None
    return gen(programs, rate, seed, **options)
