"""Program-level policies: Autellix's PLAS and ATLAS, request-level MLFQ, HEXGEN-TEXT2SQL's
least-slack-first, and Legato's adaptive Gittins-index policy.

All are pure: they learn from ``on_admit``/``on_finish``/``on_program_end`` and order waiting
calls with ``key(call, now)``; none reads a clock.

**Queues (PLAS, ATLAS, MLFQ).** A continuous priority (seconds of service) is discretised into
``K = 8`` queues with doubling thresholds ``0.5, 1, 2, ..., 32`` seconds: queue ``i`` holds values
in ``[T_{i-1}, T_i)``. Doubling keeps the number of demotions logarithmic in a program's length
(Autellix uses the same exponential quanta); 0.5 s is roughly one short call on the reference
engine, so a program's first call always starts in the top queue. Within a queue, calls go in
arrival order. **Anti-starvation:** a waiting call whose program has waited at least ``beta = 4``
times its service so far (including this call's wait) jumps to the top queue; Autellix promotes
on the same wait/service ratio. 4 keeps the promotion rare for programs that are merely long
while bounding any program's slowdown. A program that has attained no service yet is measured
against its waiting call's expected service (its size as the compiled graph estimates it), so
a first call that a policy places low (a long call under MLFQ's skip-join, a kind of low
Gittins index) cannot wait forever behind a stream of new arrivals; with no estimate either
(0), there is no ratio to bound. A program's wait counts its calls' time in the admission
queue and, where the engine reports its own service time, their time queued at the engine (before
they first ran and after each preemption: the engine's service time is time in the batch only).
Calls mostly wait at the engine when the orchestrator admits more calls than the
engine batches, so the rule travels with each call: ``promotion(call, now)`` says when, if the call
is still waiting at the engine, its program starves and what priority it should have then (sent
as ``X-Legato-Promote-After`` / ``X-Legato-Promote-To``; the embedded engine honours them).

**Demotion by quantum while a call runs** (``QueueConfig(demote_running=True)``, off by default).
Between calls, PLAS and ATLAS demote a program by the service its calls have finished with (MLFQ
places each call by its own expected size). Autellix also demotes inside the engine: a call whose
program crosses its queue's threshold while the call runs falls to the next queue there, and better
calls may preempt it. With the option on, ``demotion(call, now)`` gives those steps (seconds of the
call's own service, then the queue it falls to). They are sent as ``X-Legato-Demote``, and the
embedded engine's batcher sees each new priority once the call has run that long. Measured with
``legato bench sched``'s workloads on the embedded engine (seed 0, default rates), it was off
against on:

- chat, PLAS: mean 28.2 s against 29.0 s; p50 12.2 against 12.8 s; p99 118.7 against 121.3 s;
  1,162 against 1,330 preemptions;
- dag, ATLAS: 8.2 against 18.6 s;
- tree, ATLAS: 8.1 against 8.9 s.

MLFQ on chat did not change: its calls rarely outrun the queue of their expected size. The
engine preempts by recomputing, so a demoted call that yields loses its work, and the calls
that take its place are no shorter on the whole.
"""

from __future__ import annotations

import bisect
import itertools
import math
import sys
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.scheduler._policy import CallInfo

__all__ = ["ATLAS", "MLFQ", "PLAS", "SLO", "Adaptive", "QueueConfig", "gittins_index"]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    """Discretisation of a service value into queues, and the anti-starvation ratio."""

    thresholds: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    beta: float = 4.0
    demote_running: bool = False
    """Demotion by quantum while a call runs (``demotion``): off by default, because on the
    embedded engine, whose preemption recomputes, it measured worse wherever it acted."""

    def __post_init__(self) -> None:
        t = self.thresholds
        if not t or not all(math.isfinite(x) and x > 0 for x in t):
            raise ValueError(f"QueueConfig.thresholds must be seconds > 0, got {t}")
        if any(b <= a for a, b in itertools.pairwise(t)):
            raise ValueError(f"QueueConfig.thresholds must increase, got {t}")
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"QueueConfig.beta must be > 0, got {self.beta}")

    def queue(self, value: float) -> int:
        """The queue of ``value`` (0 is served first)."""
        return bisect.bisect_right(self.thresholds, value)


@dataclass(slots=True)
class _Program:
    service: float = 0.0  # attained service: sum over finished calls
    critical: float = 0.0  # ATLAS: longest chain of service among finished calls
    waited: float = 0.0  # time its calls spent waiting for admission
    calls: int = 0


@dataclass
class _Base:
    """Book-keeping shared by the program-level policies."""

    config: QueueConfig = field(default_factory=QueueConfig)
    programs: dict[str, _Program] = field(default_factory=lambda: defaultdict(_Program))
    admitted: dict[str, float] = field(default_factory=dict)
    """When each call now at the backend was admitted (its wait since then is not yet in its
    program's ``waited``); ``on_finish``, which admission always calls, removes it."""
    _origin: float | None = None
    """When ``_hint`` was first asked: ranks count from it (see ``_rank``)."""

    def _hint(self, cls: int, moment: float, now: float) -> int:
        """A priority hint of class ``cls`` ranked by ``moment``: ``cls * 10**9 + rank``
        (``_rank``, counted from the first hint asked)."""
        if self._origin is None:
            self._origin = now
        return cls * _CLASS + _rank(moment, self._origin)

    def _since(self, call: CallInfo) -> float:
        """Since when ``call`` has been waiting, as far as its program's ``waited`` does not
        count yet: its admission if it was admitted (it may wait at the engine), else the
        moment it became ready."""
        return self.admitted.get(call.call, call.arrival)

    @staticmethod
    def _measure(p: _Program | None, call: CallInfo) -> float:
        """The service that ``call``'s program's wait is measured against: its attained
        service, or, before it has any, the call's own expected service (0: it cannot starve)."""
        return p.service if p is not None and p.service > 0.0 else call.expected_service

    def _starved(self, call: CallInfo, now: float) -> bool:
        p = self.programs.get(call.program)
        service = self._measure(p, call)
        waited = (p.waited if p else 0.0) + (now - self._since(call))
        return service > 0.0 and waited >= self.config.beta * service

    def expires(self, call: CallInfo, now: float) -> float:
        """When ``call``'s key changes by time alone: when it starves (see the module
        docstring); ``inf`` if it cannot."""
        p = self.programs.get(call.program)
        service = self._measure(p, call)
        if service <= 0.0 or self._starved(call, now):
            return math.inf  # never starves, or already has: time alone changes nothing now
        return self._since(call) + self.config.beta * service - (p.waited if p else 0.0)

    def promotion(self, call: CallInfo, now: float) -> tuple[float, int] | None:
        """For a call sent to the engine at ``now``: if it is still waiting there after the
        first number of seconds, its program starves and its priority should become the
        second (0: the top queue). None if it cannot starve or already has (its priority says
        so now)."""
        when = self.expires(call, now)
        if when == math.inf:
            return None
        return max(0.0, when - now), 0

    def _steps(self, value: float, start: float) -> tuple[tuple[float, int], ...]:
        """Demotion by quantum for a call whose priority value is ``value`` now and becomes
        ``start`` plus its own service as it runs (``start <= value``): for each threshold
        above ``value``, after how many seconds of service the call reaches it and the queue
        it then falls to."""
        if not self.config.demote_running:
            return ()
        thresholds = self.config.thresholds
        first = self.config.queue(value)
        return tuple((t - start, q + 1) for q, t in enumerate(thresholds) if q >= first)

    def on_admit(self, call: CallInfo, now: float) -> None:
        """Adds the call's wait for admission (``now - arrival``) to its program's ``waited`` and
        records when it was admitted."""
        self.programs[call.program].waited += now - call.arrival
        self.admitted[call.call] = now

    def on_finish(self, call: CallInfo, now: float, service: float) -> None:
        """Adds ``service`` to its program's attained service and counts the call; if it was
        admitted, the time since beyond ``service`` counts as waiting (at the engine)."""
        p = self.programs[call.program]
        p.service += service
        p.calls += 1
        admitted = self.admitted.pop(call.call, None)
        if admitted is not None:
            # held ``now - admitted``, ran ``service``: the rest it waited at the engine (0
            # when ``service`` is the slot's own time, without the engine's figure)
            p.waited += max(0.0, now - admitted - service)

    def on_program_end(self, program: str, kind: str, now: float) -> None:
        """Forgets the program's book-keeping."""
        self.programs.pop(program, None)

    def priority(self, call: CallInfo, now: float) -> int:
        """The priority hint (here: the first element of ``key`` as an int; for PLAS, ATLAS and
        MLFQ, the queue, 0 first)."""
        return int(self.key(call, now)[0])

    def key(self, call: CallInfo, now: float) -> tuple[float, ...]:  # pragma: no cover
        raise NotImplementedError


class PLAS(_Base):
    """Program-level least attained service (Autellix, single-threaded programs): a call's
    priority is the total service its program's finished calls received; less goes first."""

    name = "plas"

    def key(self, call: CallInfo, now: float) -> tuple[float, ...]:
        """Sort key of a waiting call (here: the queue of its program's attained service, the top
        one if the program starves; then arrival)."""
        p = self.programs.get(call.program)
        q = 0 if self._starved(call, now) else self.config.queue(p.service if p else 0.0)
        return (q, call.arrival, call.seq)

    def demotion(self, call: CallInfo, now: float) -> tuple[tuple[float, int], ...]:
        """Demotion by quantum for a call sent to the engine at ``now``: its program's attained
        service grows with the call's own service while it runs, so each time it crosses a
        queue's threshold the call falls to the next queue (``(seconds of service, queue)``
        steps; none for a starving program, which the top queue keeps)."""
        if self._starved(call, now):
            return ()
        p = self.programs.get(call.program)
        service = p.service if p else 0.0
        return self._steps(service, service)


@dataclass
class ATLAS(_Base):
    """Program-level least attained service along the critical path (Autellix, DAG programs):
    a call's service-on-path is ``max(parent.path + parent.service)``; the program's priority is
    the longest such path seen so far, so parallel branches do not count twice."""

    name = "atlas"
    path_end: dict[str, float] = field(default_factory=dict)  # call -> path + own service

    def _path_start(self, call: CallInfo) -> float:
        return max((self.path_end.get(p, 0.0) for p in call.parents), default=0.0)

    def key(self, call: CallInfo, now: float) -> tuple[float, ...]:
        """Sort key of a waiting call (here: the queue of its program's longest path of service so
        far, the top one if the program starves; then arrival)."""
        p = self.programs.get(call.program)
        q = 0 if self._starved(call, now) else self.config.queue(p.critical if p else 0.0)
        return (q, call.arrival, call.seq)

    def demotion(self, call: CallInfo, now: float) -> tuple[tuple[float, int], ...]:
        """Demotion by quantum (see ``PLAS.demotion``): while the call runs, its path end
        (its parents' longest path end plus its own service so far) raises its program's
        longest path once it passes it."""
        if self._starved(call, now):
            return ()
        p = self.programs.get(call.program)
        return self._steps(p.critical if p else 0.0, self._path_start(call))

    def on_finish(self, call: CallInfo, now: float, service: float) -> None:
        """As ``_Base``, and records the call's path end (its parents' longest path end plus
        ``service``), raising its program's longest path to it."""
        super().on_finish(call, now, service)
        end = self._path_start(call) + service
        self.path_end[call.call] = end
        p = self.programs[call.program]
        p.critical = max(p.critical, end)

    def on_program_end(self, program: str, kind: str, now: float) -> None:
        """As ``_Base``, and forgets the path ends of the program's calls (``program/...``)."""
        super().on_program_end(program, kind, now)
        prefix = program + "/"
        for k in [k for k in self.path_end if k.startswith(prefix)]:
            del self.path_end[k]


class MLFQ(_Base):
    """Request-level multi-level feedback queue with skip-join (FastServe): a call enters the
    queue of its own expected service (long calls skip the top queues); it knows nothing of
    programs. The engines' request-level alternative to program-level policies."""

    name = "mlfq"

    def key(self, call: CallInfo, now: float) -> tuple[float, ...]:
        """Sort key of a waiting call (here: the queue of its own expected service, the top one if
        its program starves; then arrival)."""
        q = 0 if self._starved(call, now) else self.config.queue(call.expected_service)
        return (q, call.arrival, call.seq)

    def demotion(self, call: CallInfo, now: float) -> tuple[tuple[float, int], ...]:
        """Demotion by quantum on the call's own service (FastServe): it entered the queue of
        its expected service and falls a queue each time its service passes the next
        threshold."""
        if self._starved(call, now):
            return ()
        return self._steps(call.expected_service, 0.0)


@dataclass
class SLO(_Base):
    """Least slack first over per-stage deadlines (HEXGEN-TEXT2SQL): the runtime splits each
    program's remaining SLO budget over its remaining stages in proportion to their expected
    times, ``deadline = now + (SLO - elapsed) * t(stage) / sum(t(remaining))``; the call with the
    least slack ``deadline - now - t(stage)`` goes first.

    Calls that can no longer make their deadline (negative slack) go after every call that
    still can: serving the already-late first is what makes earliest-deadline-first collapse
    under overload (everyone ends up late). Calls without a deadline go last, in arrival order.

    Priorities sent to engines are ``class * 10**9 + rank``: class 0 for a call that can still
    start in time, 1 for a late one, then its latest start in 10 ms ticks; ``2 * 10**9`` for
    every call without a deadline (the engine's own arrival order among them). An engine
    compares the hints of calls sent at different moments, so a hint names the moment, not the
    slack left when it was sent: a call sent early with much slack and one sent later with
    less keep their true order. (A call that goes late while it waits at the engine keeps its
    class there: hints only ever promote.)
    """

    name = "slo"

    def key(self, call: CallInfo, now: float) -> tuple[float, ...]:
        """Sort key of a waiting call (here: calls that can still start in time, then late calls,
        each by latest start ``deadline - expected_service``; then calls without a deadline)."""
        if call.deadline is None:
            return (2.0, math.inf, call.arrival, call.seq)
        latest_start = call.deadline - call.expected_service
        # slack = latest_start - now; ``now`` is common to every call, so order by the rest
        return (0.0 if now <= latest_start else 1.0, latest_start, call.arrival, call.seq)

    def promotion(self, call: CallInfo, now: float) -> tuple[float, int] | None:
        """None: a late call goes after the others, it is never promoted."""
        return None

    def expires(self, call: CallInfo, now: float) -> float:
        """The moment a call's slack turns negative (its key changes class then)."""
        if call.deadline is None:
            return math.inf
        latest_start = call.deadline - call.expected_service
        return latest_start if now <= latest_start else math.inf

    def priority(self, call: CallInfo, now: float) -> int:
        """The priority hint (here: ``class * 10**9 + rank`` as the class docstring says; lower
        goes first)."""
        if call.deadline is None:
            return 2 * _CLASS  # one value for all: the engine's own arrival order among them
        latest_start = call.deadline - call.expected_service
        return self._hint(0 if now <= latest_start else 1, latest_start, now)


def gittins_index(samples: Sequence[float], attained: float) -> float:
    """The Gittins index of a job with ``attained`` service whose total service is distributed
    as the sorted ``samples``: ``sup_d P(S - a <= d | S > a) / E[min(S - a, d) | S > a]``.

    Higher is more urgent. For a decreasing hazard rate (heavy tails) the index falls with
    attained service and the rule acts like least-attained-service; for a known size it rises
    as the job nears completion and acts like shortest-remaining-first.
    """
    i = bisect.bisect_right(samples, attained)
    rest = [s - attained for s in samples[i:]]
    if not rest:
        return math.inf  # longer than anything seen: treat as about to finish
    n = len(rest)
    best = 0.0
    spent = 0.0  # sum of min(S - a, d) over remaining samples for d = rest[k]
    prev = 0.0
    for k, d in enumerate(rest):
        spent += (d - prev) * (n - k)
        prev = d
        best = max(best, (k + 1) / spent if spent > 0 else math.inf)
    return best


_CLASS = 10**9
"""Adaptive's priorities are ``class * _CLASS + rank`` (see ``_rank``)."""
_TICK = 0.01


def _rank(t: float, origin: float) -> int:
    """A moment (a program's arrival, or a call's latest start) as a rank within a class: 10 ms
    ticks since ``origin`` (when the policy first ranked a call), offset by half a class so
    that moments before it (a slack-shifted moment, a virtual clock's negative times) keep
    their order. Moments more than ``_CLASS // 2`` ticks (about 58 days) from ``origin`` share
    the first or last rank: order is lost between them, never inverted. (Ranked from the
    clock's own zero, a monotonic clock that starts at boot would have wrapped on any machine
    up for 58 days, ranking new programs before old ones.)"""
    ticks = math.floor((t - origin) / _TICK) + _CLASS // 2
    return min(_CLASS - 1, max(0, ticks))


def _cv(values: Sequence[float]) -> float:
    """Coefficient of variation (standard deviation over mean) of ``values``."""
    n = len(values)
    mean = sum(values) / n
    if mean <= 0.0:
        return math.inf
    var = sum((v - mean) ** 2 for v in values) / n
    return math.sqrt(var) / mean


def _bucket(index: float) -> int:
    """A Gittins index as one of 99 classes, 1 (most urgent) to 99, a factor of 2**0.25
    apart: indices closer than that are equally urgent and the program's age decides."""
    if math.isinf(index):
        return 1
    return 1 + max(0, min(98, int(4 * (10 - math.log2(max(index, 1e-12))))))


@dataclass(slots=True)
class _Sizes:
    """Running mean and variance of a kind's call sizes (Welford)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    def cv(self) -> float:
        return math.sqrt(self.m2 / self.n) / self.mean if self.n and self.mean > 0 else 0.0


_POOL = "\0all"
"""History key of the pooled distribution of every kind's programs."""


@dataclass
class Adaptive(_Base):
    """Legato's adaptive policy: Gittins indices from what the runtime has measured, at the
    level (program or call) where the workload's structure says delay is paid.

    Why: no fixed rule wins everywhere. PLAS (least attained service) is optimal for
    heavy-tailed program lengths but delays long programs and hurts tails; program-level FCFS
    wins when programs are alike (tool loops), where finishing the program that is furthest
    along is best; request-level shortest-first (MLFQ with known sizes) wins on multi-turn chat.
    The Gittins index is the optimal single-server rule for a known service distribution and
    reduces to each of them where each is optimal: with a decreasing hazard rate it orders like
    least-attained-service, with near-deterministic sizes like shortest-remaining (which, for
    identical programs, is oldest-first), and for a job of known size it is one over the size.

    Which index, decided per kind from measurements:

    - **Chains of calls of varied, known size** (every program of the kind had at most one call
      in flight, and the graph's size estimates of its calls vary with a coefficient of
      variation above ``call_cv``; multi-turn chat): between its calls the program waits on the
      user or a tool, so each second a waiting call waits adds a second to its program and the
      mean completion time is the sum of the calls' response times. The Gittins index of a call
      of known size is ``1 / size``: shortest call first, the program's age breaking ties. Below
      ``call_cv`` (tool loops, CV ~0.4), keeping a program's calls together (and its KV cache
      warm) is worth more than ordering by size.
    - **Alike programs** (coefficient of variation of the kind's total service below
      ``predictable_cv``): attained service is a poor measure of progress (a map-reduce program
      attains service fast in its parallel phase and still has its critical path ahead), so the
      kind's index at the start places the kind among the others and, within the kind, the
      oldest program goes first (program-level FCFS). Where the kind's programs run calls in
      parallel (a tree search, a map-reduce), a call counts as older by ``slack_weight`` times
      the work on its program's longest chain from it (its own expected service plus the
      graph's ``remaining``): the key is ``program_arrival - slack_weight * (expected_service +
      remaining)``, a blend of program-level FCFS (weight 0) and least-slack-first with one
      deadline per program (weight 1). A new program's first calls, which gate all of its
      fan-out, then go before an older program's last wide level, which can only use the
      batch's spare slots anyway: programs overlap their narrow and wide phases, as
      request-level FCFS makes them do by accident, while each program's critical path stays
      in order. Weight 0.5 is measured, not derived: over tree, text2sql, dag and mixed with
      seeds 0-2 (11 runs), adaptive over the best other policy was at worst 1.027 and 0.966 on
      average with 0.5, 1.023 and 0.977 with 0.25, and 1.324 and 1.044 with 1 (on text2sql,
      young programs' first calls then keep overtaking old programs' last stages).
    - **Otherwise**: the program's Gittins index over its kind's distribution of total service
      at its attained service; where the compiled graph knows the program's remaining work
      (static DAGs), at least the reciprocal of that work (shortest remaining first).
    - **A kind without history** (fewer than ``min_samples`` finished programs): the Gittins
      index over the pooled distribution of every kind's programs at the program's attained
      service. A new kind is placed by what is known of programs in general rather than ahead
      of every kind that has history. Before any program has finished, oldest program first.

    Priorities sent to engines are ``class * 10**9 + rank``: the Gittins class (a factor of
    2**0.25 apart), then the key's moment (the program's arrival, or the slack-shifted moment
    above) in 10 ms ticks, so an engine that breaks ties by request arrival still keeps
    programs in order. They order admissions only: adaptive never preempts a running call
    (``preempt_threshold``). Anti-starvation as in the module
    docstring, except where it cannot starve anyone: a call whose kind runs oldest program
    first (alike programs, or nothing known yet), with no kind in progress placed ahead of it,
    waits only behind older programs that FCFS serves in turn (and, with the slack shift,
    behind programs younger by at most ``slack_weight`` times a chain of their work), so it is
    never promoted. Promoting there only preempted: on ``tree`` (one alike kind) it made 1,015
    preemptions with seed 2 and cost 14% of mean completion time against program-level FCFS
    (seeds 0, 1, 2: adaptive / best other 1.071, 1.062, 1.138 with it, 1.058, 1.027, 1.001
    without); where another kind is ordered ahead (``mixed``), the rule applies as before.

    Evidence (``legato bench sched --workload W``, default rates, one run each, adaptive's mean
    completion time over the best other policy's): chat 1.001 (MLFQ best; 1.14 before the chain
    rule), react 1.011 (program-level FCFS best; 1.030 with ``--seed 2``), tree 0.883 (1.058
    before the slack shift, when request-level FCFS was best; 1.083 while age preempted), dag
    0.979, text2sql 0.988 and mixed 0.967 (adaptive best). While a better class preempted:
    chat 1.005, react 1.010 (seed 2: 1.064) and mixed 0.980, the rest the same. While programs
    without service could starve and the engine credited preemption victims with shared
    blocks: react 1.014 and mixed 0.977, the rest the same (react with ``--seed 2``: 1.056).
    Before the engine evicted ended programs' blocks
    first: react 1.037, text2sql 1.016 and mixed 0.977, the rest the same; before the slack shift
    dag 1.005, text2sql 1.019, mixed 0.974. Before anti-starvation reached the engine, chat measured
    1.006 and react 1.004; before program-level FCFS stopped preempting for age, react 1.015 and
    text2sql 1.004; before the engine stopped counting a call's time in the batch toward its
    promotion, chat 0.998, react 1.027 and mixed 0.977.
    ``call_cv = 0.6`` sits between react's call sizes (CV ~0.43; size order there measured
    1.04 of program-level FCFS) and chat's (~0.9).
    """

    name = "adaptive"
    uses_kv_ttl = True
    preempt_threshold = sys.maxsize
    """For the engine's batcher (``PriorityBatch(preempt_threshold=...)``): adaptive never
    preempts; its hints order admissions. The embedded engine preempts by recomputing, so a
    victim's work is lost, and calls whose size the graph knows are ordered well enough when
    they are admitted. Preempting for age alone cost 8% of mean completion time on ``tree``
    (1,400 preemptions); preempting for a better Gittins class only (half a class, the
    threshold before) against never, mean completion time in seconds with seeds 0, 1, 2:
    chat 25.21 / 25.11, 26.46 / 26.74, 29.31 / 29.25; react 17.32 / 17.34, 16.83 / 16.80,
    19.91 / 19.28; mixed 13.16 / 12.99, 12.39 / 12.53, 14.09 / 14.15 (tree, dag and text2sql
    did not preempt). Within 1.1% either way, except react with seed 2: there the class of
    its programs moved as the measured variation of their service crossed
    ``predictable_cv``, 442 calls were preempted, and adaptive over the best other policy
    went from 1.064 to 1.030 without them."""
    min_samples: int = 8
    window: int = 500
    history: dict[str, deque[float]] = field(default_factory=dict)
    epoch: int = 0
    """Bumped when a kind's distribution is refreshed or a kind starts or stops having programs
    in progress: every queued key may have moved."""
    _sorted: dict[str, list[float]] = field(default_factory=dict)
    _unsorted: dict[str, int] = field(default_factory=dict)
    _index: dict[tuple[str, str], tuple[float, list[float], float]] = field(default_factory=dict)
    """Each (program, kind)'s last Gittins index: at which attained service, over which sorted
    history (the list itself: a refresh replaces it, even once the window is full and its
    length no longer changes), and the index."""
    _cv: dict[str, float] = field(default_factory=dict)
    predictable_cv: float = 0.5
    """Below this coefficient of variation of a kind's program service, its programs are
    alike and run oldest first (the Gittins index would say the same, less exactly)."""
    slack_weight: float = 0.5
    """How much of a call's chain of remaining work (seconds) makes it count as older, in kinds
    whose programs run calls in parallel (see the class docstring)."""
    call_cv: float = 0.6
    """Above this coefficient of variation of a chain kind's call sizes, its calls go shortest
    first (see the class docstring)."""
    min_calls: int = 20
    """Calls of a kind measured before its call sizes are trusted to vary."""
    _in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _width: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _kind_width: dict[str, int] = field(default_factory=dict)
    _sizes: dict[str, _Sizes] = field(default_factory=lambda: defaultdict(_Sizes))
    _chains: set[str] = field(default_factory=set)
    _active: dict[str, set[str]] = field(default_factory=dict)
    """Programs admitted and not ended, by kind."""
    _exempt: dict[str, bool] = field(default_factory=dict)
    _exempt_epoch: int = -1

    def _gittins(self, program: str, kind: str, attained: float) -> float | None:
        samples = self._sorted.get(kind)
        if samples is None or len(samples) < self.min_samples:
            return None
        cached = self._index.get((program, kind))
        if cached is not None and cached[0] == attained and cached[1] is samples:
            return cached[2]
        index = gittins_index(samples, attained)
        self._index[(program, kind)] = (attained, samples, index)
        return index

    def _update_chain(self, kind: str) -> None:
        """Decide again whether ``kind``'s programs are chains of calls whose sizes vary (see
        the class docstring); a change re-keys every queued call."""
        sizes = self._sizes.get(kind)
        chain = (
            self._kind_width.get(kind) == 1
            and sizes is not None
            and sizes.n >= self.min_calls
            and sizes.cv() > self.call_cv
        )
        if chain != (kind in self._chains):
            if chain:
                self._chains.add(kind)
            else:
                self._chains.discard(kind)
            self.epoch += 1

    def _fcfs_class(self, kind: str) -> int | None:
        """The class of ``kind``'s calls if they run oldest program first (alike programs, or
        nothing known yet), else None (their order can starve a program)."""
        if kind in self._chains:
            return None
        samples = self._sorted.get(kind)
        if samples is None or len(samples) < self.min_samples:
            pool = self._sorted.get(_POOL)
            return 0 if pool is None or len(pool) < self.min_samples else None
        if self._cv.get(kind, math.inf) >= self.predictable_cv:
            return None
        start = self._gittins("\0start", kind, 0.0)
        assert start is not None
        return _bucket(start)

    def _cannot_starve(self, call: CallInfo) -> bool:
        """Whether ``call``'s program waits only behind older programs: its kind runs oldest
        first and no kind in progress is placed ahead of it. Program-level FCFS bounds such a
        wait by the older programs' work, so anti-starvation would only reorder programs that
        FCFS already serves in turn (and preempt to do it)."""
        if self._exempt_epoch != self.epoch:  # the answer moves only with the epoch
            self._exempt.clear()
            self._exempt_epoch = self.epoch
        cached = self._exempt.get(call.kind)
        if cached is not None:
            return cached
        mine = self._fcfs_class(call.kind)
        exempt = mine is not None
        if mine is not None:
            for kind in self._active:
                other = mine if kind == call.kind else self._fcfs_class(kind)
                if other is None or other < mine:
                    exempt = False
                    break
        self._exempt[call.kind] = exempt
        return exempt

    def _starved(self, call: CallInfo, now: float) -> bool:
        return not self._cannot_starve(call) and super()._starved(call, now)

    def expires(self, call: CallInfo, now: float) -> float:
        return math.inf if self._cannot_starve(call) else super().expires(call, now)

    def key(self, call: CallInfo, now: float) -> tuple[float, ...]:
        """Sort key of a waiting call (here: starved calls first; then ``(1, Gittins class, moment,
        seq)``, the class and moment chosen per kind as the class docstring says)."""
        if self._starved(call, now):
            return (0, -math.inf, call.arrival, call.seq)
        if call.expected_service > 0.0 and call.kind in self._chains:
            return (1, _bucket(1.0 / call.expected_service), call.program_arrival, call.seq)
        p = self.programs.get(call.program)
        attained = p.service if p else 0.0
        samples = self._sorted.get(call.kind)
        if samples is None or len(samples) < self.min_samples:
            pooled = self._gittins(call.program, _POOL, attained)
            if pooled is None:
                return (1, 0, call.program_arrival, call.seq)  # nothing known: oldest first
            return (1, _bucket(pooled), call.program_arrival, call.seq)
        if self._cv.get(call.kind, math.inf) < self.predictable_cv:
            # Alike programs: the kind's index at the start places it among other kinds; within
            # the kind, oldest program first (progress in service is not progress in a DAG).
            start = self._gittins("\0start", call.kind, 0.0)
            assert start is not None
            moment = call.program_arrival
            if self._kind_width.get(call.kind, 1) > 1:
                moment -= self.slack_weight * (call.expected_service + call.remaining)
            return (1, _bucket(start), moment, call.seq)
        index = self._gittins(call.program, call.kind, attained)
        assert index is not None
        if call.remaining > 0.0:
            index = max(index, 1.0 / (call.remaining + call.expected_service))
        return (1, _bucket(index), call.program_arrival, call.seq)

    def priority(self, call: CallInfo, now: float) -> int:
        """0 for starved calls; then by Gittins class (higher index, lower value) and, within
        a class, by the key's moment (``class * 10**9 + rank``, see ``_rank``), so an engine
        that breaks ties by request arrival still keeps programs in order."""
        k = self.key(call, now)
        if k[0] == 0:
            return 0
        return self._hint(1 + int(k[1]), k[2], now)

    def on_admit(self, call: CallInfo, now: float) -> None:
        """As ``_Base``, and marks the program (and its kind) in progress and counts its calls in
        flight, keeping their peak (the program's width)."""
        super().on_admit(call, now)
        active = self._active.get(call.kind)
        if active is None:
            active = self._active[call.kind] = set()
            self.epoch += 1  # a kind in progress may end another kind's exemption
        active.add(call.program)
        n = self._in_flight[call.program] = self._in_flight[call.program] + 1
        self._width[call.program] = max(self._width[call.program], n)

    def on_finish(self, call: CallInfo, now: float, service: float) -> None:
        """As ``_Base``, and takes the call out of flight and adds its expected service to its
        kind's call sizes, which may make the kind a chain of calls or stop it being one."""
        super().on_finish(call, now, service)
        if self._in_flight.get(call.program):  # a batcher reports finishes without admissions
            self._in_flight[call.program] -= 1
        self._sizes[call.kind].add(call.expected_service)
        self._update_chain(call.kind)

    def _learn(self, kind: str, service: float) -> None:
        recent = self.history.setdefault(kind, deque(maxlen=self.window))
        recent.append(service)  # the recent past only: the workload may shift
        # Refresh the distribution when it has grown by a tenth (or reached min_samples):
        # each refresh re-keys every queued call, so not on every program's end.
        fresh = self._unsorted.get(kind, 0) + 1
        known = len(self._sorted.get(kind, ()))
        if known < self.min_samples or fresh >= max(self.min_samples, known // 10):
            self._sorted[kind] = sorted(recent)
            self._cv[kind] = _cv(recent)
            self._unsorted[kind] = 0
            self.epoch += 1
        else:
            self._unsorted[kind] = fresh

    def on_program_end(self, program: str, kind: str, now: float) -> None:
        """Learns the program's total service (if it finished a call) into its kind's history and
        the pooled one, and its width into its kind's; then forgets the program."""
        p = self.programs.get(program)
        if p is not None and p.calls:
            self._learn(kind, p.service)
            self._learn(_POOL, p.service)
        width = self._width.pop(program, 0)
        self._in_flight.pop(program, None)
        if width:
            self._kind_width[kind] = max(self._kind_width.get(kind, 0), width)
            self._update_chain(kind)
        self._index.pop((program, kind), None)
        self._index.pop((program, _POOL), None)
        active = self._active.get(kind)
        if active is not None:
            active.discard(program)
            if not active:
                del self._active[kind]
                self.epoch += 1
        super().on_program_end(program, kind, now)
