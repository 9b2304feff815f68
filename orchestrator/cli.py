"""The ``legato`` command line: run and graph programs, the demo, and benchmarks."""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dsl
from orchestrator._cli_options import (
    int_at_least,
    name_list,
    name_or_path,
    non_negative_int,
    port,
    positive_float,
    positive_int,
    probability,
)
from orchestrator.errors import ConfigError, LegatoError

__all__ = ["load_program", "main"]


def _split_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def _parse_value(text: str) -> Any:
    """A program argument from the command line: JSON if it parses as JSON, else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def load_program(target: str) -> dsl.Program[Any, Any]:
    """Load ``FILE.py[:PROGRAM]``; without ``:PROGRAM`` the file must define exactly one."""
    path_text, _, name = target.partition(":")
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"{path_text}: no such file")
    module_name = f"legato_user_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path_text}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    programs = {k: v for k, v in vars(module).items() if isinstance(v, dsl.Program)}
    if name:
        if name not in programs:
            raise ConfigError(
                f"{path_text}: no @dsl.program named {name!r}; found: "
                f"{', '.join(sorted(programs)) or 'none'}"
            )
        return programs[name]
    if len(programs) != 1:
        raise ConfigError(
            f"{path_text}: defines {len(programs)} programs "
            f"({', '.join(sorted(programs)) or 'none'}); pick one with {path_text}:NAME"
        )
    return next(iter(programs.values()))


def _cmd_run(ns: argparse.Namespace, extra: list[str]) -> int:
    from orchestrator.runtime import run

    program = load_program(ns.target)
    args = [_parse_value(a) for a in extra]
    result = run(program, *args, backend=ns.backend)
    if isinstance(result, str):
        print(result)
    else:
        print(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    return 0


def _cmd_graph(ns: argparse.Namespace, extra: list[str]) -> int:
    program = load_program(ns.target)
    graph = program.trace(*[_parse_value(a) for a in extra])
    if ns.format == "mermaid":
        sys.stdout.write(graph.to_mermaid())
    else:
        cp = dsl.passes.critical_path(graph)
        remaining = dsl.passes.remaining_work(graph)
        print(
            json.dumps(
                {
                    "name": graph.name,
                    "nodes": [
                        {
                            "id": n.id,
                            "kind": type(n).__name__,
                            "deps": list(n.deps),
                            "after": list(n.after),
                            "thread": n.thread,
                            "remaining_critical_s": remaining[n.id].critical,
                            "remaining_total_s": remaining[n.id].total,
                        }
                        for n in graph
                    ],
                    "critical_path": {"length_s": cp.length, "nodes": list(cp.nodes)},
                },
                indent=2,
            )
        )
    return 0


def _cmd_demo(ns: argparse.Namespace, extra: list[str]) -> int:
    from orchestrator.demo import main as demo_main

    return demo_main(ns.backend)


def _cmd_model_make(ns: argparse.Namespace, extra: list[str]) -> int:
    from orchestrator.engine import make_model

    files = make_model(ns.preset, seed=ns.seed, out=Path(ns.out), dtype=ns.dtype)
    print(f"gguf: {files.gguf}\ntokenizer: {files.tokenizer}\nhf: {files.hf_dir}")
    return 0


def _cmd_model_train(ns: argparse.Namespace, extra: list[str]) -> int:
    from orchestrator.train._cli import train_main

    return train_main(ns)


def _cmd_engine_serve(ns: argparse.Namespace, extra: list[str]) -> int:
    from orchestrator._http import serve_asgi
    from orchestrator.engine import build_engine
    from orchestrator.engine._server import create_app

    policy: Any = ns.policy
    if ns.preempt_threshold is not None:
        if ns.policy != "priority":
            raise ConfigError(
                f"--preempt-threshold applies to --policy priority, not {ns.policy!r}"
            )
        from orchestrator.scheduler import PriorityBatch

        try:
            policy = PriorityBatch(ns.preempt_threshold)
        except ValueError as exc:
            raise ConfigError(f"--preempt-threshold: {exc}") from exc
    try:
        engine, name = build_engine(
            ns.model, seed=ns.seed, kv_tokens=ns.kv_tokens, max_batch=ns.max_batch, policy=policy
        )
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from exc
    if not ns.announce_port:
        print(f"legato engine: serving {name!r} on http://{ns.host}:{ns.port}/v1", file=sys.stderr)
    serve_asgi(
        create_app(engine, name, aliases=(str(ns.model),)),
        host=ns.host,
        port=ns.port,
        announce=ns.announce_port,
    )
    return 0


def _cmd_bench(ns: argparse.Namespace, extra: list[str]) -> int:
    if ns.bench == "overhead":
        from orchestrator.bench.overhead import main as overhead_main

        return overhead_main(ns.n, ns.json)
    if ns.bench == "sched":
        from orchestrator.bench.sched import main as sched_main

        ns.policies_default = ns.policies == _SCHED_POLICIES
        return sched_main(ns)
    if ns.bench == "engine":
        from orchestrator.bench.engine import main as engine_main

        return engine_main(ns.json, models=ns.models.split(","), repeats=ns.repeats)
    if ns.bench == "grammar":
        from orchestrator.bench.grammar import main as grammar_main

        return grammar_main(ns.json, quick=ns.quick)
    if ns.bench == "model":
        from orchestrator.bench.model import main as model_main

        return model_main(ns.json, model=ns.model, quick=ns.quick, train_minutes=ns.train_minutes)
    if ns.bench == "tools":
        from orchestrator.bench.tools import main as tools_main

        return tools_main(ns.json, quick=ns.quick, seed=ns.seed, questions=ns.programs)
    if ns.bench == "text2sql":
        from orchestrator.bench.text2sql import main as text2sql_main

        # sched's long default list of policies means "not given": text2sql has its own
        ns.policies_default = ns.policies == _SCHED_POLICIES
        return text2sql_main(ns)
    raise ConfigError(f"unknown benchmark {ns.bench!r}")  # pragma: no cover - argparse checks


def _cmd_sql(ns: argparse.Namespace, extra: list[str]) -> int:
    from integrations.text2sql import _cli

    if ns.sql_command == "eval" and ns.split is not None:
        return _sql_eval_splits(ns)
    if ns.sql_command in ("ask", "eval") and ns.db is None:
        raise ConfigError(f"legato sql {ns.sql_command}: --db FILE is required")
    handler = {"ask": _cli.cmd_ask, "eval": _cli.cmd_eval, "databases": _cli.cmd_databases}
    return handler[ns.sql_command](ns)


def _sql_eval_splits(ns: argparse.Namespace) -> int:
    """``legato sql eval --split S[,S...]``: the trained model on its held-out splits."""
    from rich.console import Console

    from orchestrator.bench.model import SQL_SPLITS, sql_splits

    if ns.db is not None or ns.questions is not None:
        raise ConfigError(
            "legato sql eval: --split evaluates held-out splits; drop --db/--questions"
        )
    backend = ns.backend or "local"
    kind, _, model = backend.partition(":")
    if kind != "local":
        raise ConfigError(
            f"legato sql eval --split: the splits run on the embedded engine; --backend "
            f"{backend!r} must be local[:MODEL] (a trained model, default demo)"
        )
    names = list(SQL_SPLITS) if ns.split == "all" else [x.strip() for x in ns.split.split(",")]
    report = sql_splits(model or "demo", names, n=200 if ns.limit is None else ns.limit)
    report.print(Console() if sys.stdout.isatty() else Console(width=160))
    if ns.json is not None:
        report.write_json(ns.json)
    return 0


def _add_sql_parser(sub: Any) -> None:
    """``legato sql ask|eval|databases`` (Text-to-SQL; issue 7)."""
    from orchestrator.scheduler import POLICIES

    policies = sorted(POLICIES)
    sql = sub.add_parser("sql", help="Text-to-SQL: ask a database, evaluate, make examples")
    cmds = sql.add_subparsers(dest="sql_command", required=True, metavar="{ask,eval,databases}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=None, help="the SQLite file (opened read-only)")
    common.add_argument(
        "--backend",
        default=None,
        help="local[:MODEL] or a URL (default: local:tiny for ask and eval, whose prompts need "
        "its 2,048-token context; local, the trained demo, for eval --split)",
    )
    common.add_argument(
        "--policy", default="slo", choices=policies, help="scheduling policy (default slo)"
    )
    common.add_argument(
        "--slo", type=positive_float, default=None, help="seconds per question (SLO)"
    )
    common.add_argument("--timeout", type=positive_float, default=None, help="seconds per LLM call")
    common.add_argument(
        "--candidates", type=positive_int, default=None, help="parallel SQL candidates"
    )
    common.add_argument(
        "--rounds", type=non_negative_int, default=None, help="self-correction rounds"
    )
    common.add_argument(
        "--grammar",
        choices=["scoped", "names", "none"],
        default=None,
        help="candidate grammar: scoped (every query runs; default), names, none",
    )
    common.add_argument(
        "--literals",
        choices=["free", "question"],
        default=None,
        help="string/number literals: free (default) or spans of the question",
    )
    common.add_argument(
        "--max-tokens", type=int_at_least(8), default=None, help="tokens per candidate (>= 8)"
    )
    common.add_argument(
        "--time-limit", type=positive_float, default=None, help="seconds per query run"
    )
    common.add_argument("--model", default=None, help="model name sent to the engine")
    common.add_argument("--no-link", action="store_true", help="skip schema linking")
    ask = cmds.add_parser("ask", parents=[common], help="answer one question")
    ask.add_argument("question", help="the question, in English")
    ask.add_argument(
        "--rows", type=non_negative_int, default=20, help="result rows to print (default 20)"
    )
    ask.add_argument("--json", action="store_true", help="print the answer as JSON")
    ev = cmds.add_parser("eval", parents=[common], help="execution accuracy on gold SQL")
    ev.add_argument(
        "--questions", default=None, help="JSON/JSONL question file (default: the shipped ones)"
    )
    ev.add_argument(
        "--limit", type=positive_int, default=None, help="evaluate the first N questions"
    )
    ev.add_argument(
        "--split",
        default=None,
        metavar="S[,S...]|all",
        help="instead of --db: the trained model's held-out splits (seen, values, combos, "
        "phrasings), with and without the grammar; --limit questions each (default 200)",
    )
    ev.add_argument(
        "--concurrency", type=positive_int, default=4, help="questions at once (default 4)"
    )
    ev.add_argument("--json", metavar="FILE", default=None, help="also write the figures here")
    dbs = cmds.add_parser("databases", help="write the example databases and question files")
    dbs.add_argument("out_dir", help="folder to write into")
    dbs.add_argument("--seed", type=non_negative_int, default=0, help="generator seed (default 0)")
    sql.set_defaults(fn=_cmd_sql)


_SCHED_POLICIES = "fcfs,program_fcfs,plas,atlas,mlfq,slo,adaptive"


def _parser() -> argparse.ArgumentParser:
    from orchestrator.bench.workloads import WORKLOADS
    from orchestrator.engine import BATCH_POLICIES, PRESETS, TRAINED_MODELS
    from orchestrator.scheduler import POLICIES

    batch_policies = sorted({*BATCH_POLICIES, *POLICIES})
    model = name_or_path([*TRAINED_MODELS, *sorted(PRESETS)], what="model")
    p = argparse.ArgumentParser(
        prog="legato",
        description="Legato: program-aware LLM orchestration. Program arguments go after `--` "
        "(each parsed as JSON if it is JSON, else taken as a string).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a program and print its result")
    r.add_argument("target", metavar="FILE.py[:PROGRAM]")
    r.add_argument(
        "--backend",
        default="local",
        help="'local' or 'local:MODEL' for the embedded engine (default), or the URL of an "
        "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1",
    )
    r.set_defaults(fn=_cmd_run)

    g = sub.add_parser("graph", help="print a program's traced graph (mermaid by default)")
    g.add_argument("target", metavar="FILE.py[:PROGRAM]")
    g.add_argument("--format", choices=["mermaid", "json"], default="mermaid")
    g.set_defaults(fn=_cmd_graph)

    d = sub.add_parser("demo", help="run the demo program and show its graph and timeline")
    d.add_argument(
        "--backend",
        default="local",
        help="'local[:MODEL]' (default: the embedded engine) or a server URL",
    )
    d.set_defaults(fn=_cmd_demo)

    m = sub.add_parser("model", help="make models locally").add_subparsers(
        dest="model_command", required=True, metavar="COMMAND"
    )
    mk = m.add_parser("make", help="make a model: tokenizer, random llama weights, GGUF + HF")
    mk.add_argument(
        "--preset",
        default="tiny",
        choices=sorted(PRESETS),
        help="tiny (2 layers, d=64) or small (~29M)",
    )
    mk.add_argument("--seed", type=non_negative_int, default=0)
    mk.add_argument("--dtype", default="f32", choices=["f32", "f16", "q8_0"])
    mk.add_argument("--out", required=True, help="the folder to write")
    mk.set_defaults(fn=_cmd_model_make)
    tr = m.add_parser(
        "train", help="train the demo model on CPU: corpus, tokenizer, torch; GGUF + HF + PNG"
    )
    tr.add_argument("--preset", default="demo", choices=["demo"], help="the model's shape")
    tr.add_argument(
        "--minutes", type=positive_float, default=13.0, help="optimisation budget (wall)"
    )
    tr.add_argument(
        "--steps", type=positive_int, default=None, help="a fixed number of steps instead"
    )
    tr.add_argument("--seed", type=non_negative_int, default=0)
    tr.add_argument("--dtype", default="f16", choices=["f32", "f16", "q8_0"])
    tr.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads per process (default: probe)",
    )
    tr.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="training processes, data parallel (default 1)",
    )
    tr.add_argument(
        "--corpus-size", type=positive_int, default=None, help="training examples drawn"
    )
    tr.add_argument("--out", required=True, help="the folder to write")
    tr.set_defaults(fn=_cmd_model_train)

    e = sub.add_parser("engine", help="the embedded engine").add_subparsers(
        dest="engine_command", required=True, metavar="COMMAND"
    )
    sv = e.add_parser("serve", help="serve the embedded engine over the OpenAI-compatible API")
    sv.add_argument(
        "--model",
        default="demo",
        type=model,
        help="demo (trained, shipped), a preset (tiny, small) or a GGUF",
    )
    sv.add_argument("--seed", type=non_negative_int, default=0, help="the preset's seed")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=port, default=8000, help="0 picks a free port")
    sv.add_argument(
        "--policy",
        default="fcfs",
        choices=batch_policies,
        metavar="POLICY",
        help="batch policy: fcfs, priority (follow priority hints), or a program-level policy "
        "run in the batcher (plas, atlas, mlfq, slo, adaptive, program_fcfs)",
    )
    sv.add_argument(
        "--preempt-threshold",
        type=non_negative_int,
        default=None,
        help="priority: preempt a running sequence only for a priority better by more than this "
        "(default 0; Legato's program_fcfs and adaptive hints never preempt: give "
        "200000000000, above any difference between their hints)",
    )
    sv.add_argument("--max-batch", type=positive_int, default=16, help="most sequences per step")
    sv.add_argument(
        "--kv-tokens", type=positive_int, default=16384, help="KV cache budget in tokens"
    )
    sv.add_argument(
        "--announce-port",
        action="store_true",
        help="print the bound port on stdout first (for launchers)",
    )
    sv.set_defaults(fn=_cmd_engine_serve)

    _add_sql_parser(sub)

    b = sub.add_parser("bench", help="run a benchmark")
    b.add_argument(
        "bench", choices=["overhead", "engine", "sched", "grammar", "tools", "text2sql", "model"]
    )
    b.add_argument(
        "-n", type=positive_int, default=500, help="overhead: measured calls (default 500)"
    )
    b.add_argument(
        "--models",
        default="tiny,small",
        type=name_list(PRESETS, what="model preset"),
        help="engine: presets, comma-separated",
    )
    b.add_argument(
        "--repeats", type=positive_int, default=3, help="engine: rounds per figure (median)"
    )
    b.add_argument(
        "--workload",
        default="chat",
        choices=WORKLOADS,
        help="sched: chat, react, tree, dag, text2sql or mixed",
    )
    b.add_argument(
        "--policies",
        default=_SCHED_POLICIES,
        type=name_list(POLICIES, what="policy"),
        help="sched: policies to compare, comma-separated",
    )
    b.add_argument(
        "--rate",
        "--load",
        dest="rate",
        type=positive_float,
        default=None,
        help="sched: program arrivals per second (default: per workload)",
    )
    b.add_argument(
        "--kv-tokens",
        type=positive_int,
        default=None,
        help="sched: the engine's KV budget in tokens (default 65536)",
    )
    b.add_argument(
        "--max-in-flight",
        type=positive_int,
        default=None,
        help="sched: LLM calls at the engine at once (default 256)",
    )
    b.add_argument(
        "--engine-policy",
        default=None,
        choices=batch_policies,
        metavar="POLICY",
        help="sched: the engine's batch policy (default priority; also "
        f"{', '.join(p for p in batch_policies if p != 'priority')})",
    )
    b.add_argument(
        "--programs",
        type=positive_int,
        default=None,
        help="sched: programs per run; tools: questions",
    )
    b.add_argument(
        "--seed", type=non_negative_int, default=0, help="sched, tools: the workload's seed"
    )
    b.add_argument(
        "--max-batch", type=positive_int, default=None, help="sched: the engine's batch size"
    )
    b.add_argument(
        "--sweep",
        action="store_true",
        help="sched: throughput at equal latency (highest rate sustained under a bound)",
    )
    b.add_argument("--plot", metavar="FILE.png", default=None, help="sched: plot (matplotlib)")
    b.add_argument(
        "--replicas",
        type=positive_int,
        default=1,
        help="sched: compare replica balancers on this many engines (default --rate: the "
        "workload's default times this many)",
    )
    b.add_argument(
        "--micro", action="store_true", help="sched: time one decision with 10,000 queued calls"
    )
    b.add_argument(
        "--quick",
        action="store_true",
        help="grammar, tools: a small configuration (seconds, rough)",
    )
    b.add_argument("--queries", type=positive_int, default=None, help="text2sql: queries per run")
    b.add_argument(
        "--slo-scale",
        type=positive_float,
        default=None,
        help="text2sql: SLO = scale x alone latency",
    )
    b.add_argument(
        "--fail-rate",
        type=probability,
        default=None,
        help="text2sql: share of failing candidates (0 to 1)",
    )
    b.add_argument(
        "--no-search", action="store_true", help="text2sql: skip finding fcfs's 50%% load"
    )
    b.add_argument(
        "--real",
        type=non_negative_int,
        default=None,
        help="text2sql: questions on llama-server (0: skip); sched: programs per policy on two "
        "llama-server replicas (needs --workload react; default policies fcfs..adaptive)",
    )
    b.add_argument(
        "--model",
        default="demo",
        type=model,
        help="model: the model to measure: demo (default), a preset or a GGUF file",
    )
    b.add_argument(
        "--train-minutes",
        type=positive_float,
        default=None,
        help="model: train a model with the recipe for this long first, and measure it",
    )
    b.add_argument("--json", metavar="FILE", default=None, help="also write the figures here")
    b.set_defaults(fn=_cmd_bench)
    return p


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``legato`` console script.

    While a command runs, SIGTERM exits the way Ctrl-C does (``SystemExit`` in the main
    thread): ``with`` blocks and ``finally`` clauses run, so servers the command started
    (llama-server replicas, engines) and tools' child processes are stopped, not orphaned."""
    own, extra = _split_args(sys.argv[1:] if argv is None else argv)
    ns = _parser().parse_args(own)
    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        code: int = ns.fn(ns, extra)
    except LegatoError as exc:
        print(f"legato: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
