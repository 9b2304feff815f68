"""Bad option values are refused while the command line is parsed (argparse's exit status 2,
a message naming the option), before anything starts; good ones parse; and the engine and the
benchmarks' entry points refuse the same values when called directly."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from orchestrator.cli import _SCHED_POLICIES, _parser, main
from orchestrator.errors import ConfigError

BAD: list[tuple[list[str], str]] = [
    # hangs: a batch of 0 sequences never schedules a request
    (["engine", "serve", "--max-batch", "0"], "--max-batch"),
    (["bench", "sched", "--max-batch", "0"], "--max-batch"),
    # tracebacks
    (["bench", "overhead", "-n", "0"], "-n"),
    (["bench", "sched", "--rate", "0"], "--rate"),
    (["bench", "sched", "--rate", "nan"], "--rate"),
    (["bench", "sched", "--rate", "inf"], "--rate"),
    (["bench", "sched", "--programs", "-1"], "--programs"),
    (["bench", "sched", "--programs", "abc"], "--programs"),
    (["bench", "sched", "--kv-tokens", "0"], "--kv-tokens"),
    (["bench", "sched", "--max-in-flight", "0"], "--max-in-flight"),
    (["bench", "sched", "--engine-policy", "bogus"], "--engine-policy"),
    (["bench", "sched", "--policies", "fcfs,bogus"], "--policies"),
    (["bench", "sched", "--policies", ","], "--policies"),
    (["bench", "sched", "--workload", "bogus"], "--workload"),
    (["bench", "sched", "--seed", "-1"], "--seed"),
    (["bench", "sched", "--real", "-2"], "--real"),
    (["bench", "engine", "--models", "nosuch"], "--models"),
    (["bench", "engine", "--models", "tiny,nosuch"], "--models"),
    (["bench", "engine", "--repeats", "0"], "--repeats"),
    (["bench", "text2sql", "--fail-rate", "2"], "--fail-rate"),
    (["bench", "text2sql", "--fail-rate", "-0.1"], "--fail-rate"),
    (["bench", "text2sql", "--rate", "-1"], "--rate"),
    (["bench", "text2sql", "--queries", "-3"], "--queries"),
    (["bench", "model", "--model", "nosuch"], "--model"),
    (["bench", "model", "--train-minutes", "-1"], "--train-minutes"),
    (["model", "make", "--preset", "bogus", "--out", "never"], "--preset"),
    (["model", "make", "--seed", "-1", "--out", "never"], "--seed"),
    (["model", "train", "--seed", "-1", "--out", "never"], "--seed"),
    (["model", "train", "--minutes", "0", "--out", "never"], "--minutes"),
    (["model", "train", "--steps", "0", "--out", "never"], "--steps"),
    (["model", "train", "--threads", "0", "--out", "never"], "--threads"),
    (["model", "train", "--workers", "0", "--out", "never"], "--workers"),
    (["model", "train", "--corpus-size", "-5", "--out", "never"], "--corpus-size"),
    (["engine", "serve", "--port", "70000"], "--port"),
    (["engine", "serve", "--port", "-1"], "--port"),
    (["engine", "serve", "--kv-tokens", "-16"], "--kv-tokens"),
    (["engine", "serve", "--kv-tokens", "0"], "--kv-tokens"),
    (["engine", "serve", "--model", "nosuch"], "--model"),
    (["engine", "serve", "--policy", "bogus"], "--policy"),
    (["engine", "serve", "--preempt-threshold", "-1", "--policy", "priority"], "--preempt"),
    # silently replaced by the default (0) or changed (-1, -3)
    (["sql", "ask", "--db", "x", "--candidates", "0", "q"], "--candidates"),
    (["sql", "ask", "--db", "x", "--max-tokens", "0", "q"], "--max-tokens"),
    (["sql", "ask", "--db", "x", "--max-tokens", "7", "q"], "--max-tokens"),
    (["sql", "ask", "--db", "x", "--time-limit", "0", "q"], "--time-limit"),
    (["sql", "ask", "--db", "x", "--rounds", "-1", "q"], "--rounds"),
    (["sql", "ask", "--db", "x", "--slo", "0", "q"], "--slo"),
    (["sql", "ask", "--db", "x", "--timeout", "-1", "q"], "--timeout"),
    (["sql", "ask", "--db", "x", "--rows", "-1", "q"], "--rows"),
    (["sql", "ask", "--db", "x", "--policy", "bogus", "q"], "--policy"),
    (["sql", "eval", "--db", "x", "--limit", "0"], "--limit"),
    (["sql", "eval", "--db", "x", "--limit", "-1"], "--limit"),
    (["sql", "eval", "--split", "seen", "--limit", "0"], "--limit"),
    (["sql", "eval", "--db", "x", "--concurrency", "0"], "--concurrency"),
    (["sql", "databases", "out", "--seed", "-1"], "--seed"),
    (["bench", "text2sql", "--queries", "0"], "--queries"),
    (["bench", "text2sql", "--slo-scale", "0"], "--slo-scale"),
    (["bench", "sched", "--replicas", "0"], "--replicas"),
    (["bench", "sched", "--replicas", "-3"], "--replicas"),
]


@pytest.mark.parametrize(("argv", "option"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_value_is_refused_while_parsing(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}" in err, err
    assert "Traceback" not in err


def test_the_message_says_what_was_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "sched", "--rate", "0"])
    assert "legato bench: error: argument --rate/--load: must be > 0, got 0" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main(["bench", "engine", "--models", "tiny,nosuch"])
    assert "unknown model preset 'nosuch'; known: small, tiny" in capsys.readouterr().err


def test_sched_real_names_the_workload_it_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "sched", "--real", "2"]) == 1
    err = capsys.readouterr().err
    assert "pass --workload react" in err and "'chat'" in err


GOOD: list[tuple[list[str], dict[str, Any]]] = [
    (["bench", "sched", "--rate", "0.5", "--programs", "1"], {"rate": 0.5, "programs": 1}),
    (["bench", "text2sql", "--fail-rate", "0"], {"fail_rate": 0.0}),
    (["bench", "text2sql", "--fail-rate", "1", "--real", "0"], {"fail_rate": 1.0, "real": 0}),
    (["bench", "sched", "--policies", " fcfs , slo "], {"policies": "fcfs,slo"}),
    (["bench", "sched"], {"policies": _SCHED_POLICIES, "replicas": 1, "workload": "chat"}),
    (["bench", "engine"], {"models": "tiny,small", "repeats": 3}),
    (["bench", "model", "--model", "tiny"], {"model": "tiny"}),
    (["engine", "serve", "--port", "0"], {"port": 0, "model": "demo", "max_batch": 16}),
    (["engine", "serve", "--port", "65535", "--policy", "atlas"], {"policy": "atlas"}),
    (["engine", "serve", "--preempt-threshold", "0"], {"preempt_threshold": 0}),
    (["sql", "ask", "--rounds", "0", "--max-tokens", "8", "q"], {"rounds": 0, "max_tokens": 8}),
    (["sql", "eval", "--limit", "1"], {"limit": 1, "concurrency": 4}),
    (["model", "make", "--preset", "small", "--out", "x"], {"preset": "small", "seed": 0}),
]


@pytest.mark.parametrize(("argv", "expected"), GOOD, ids=[" ".join(a) for a, _ in GOOD])
def test_good_values_parse(argv: list[str], expected: dict[str, Any]) -> None:
    ns = _parser().parse_args(argv)
    assert {k: getattr(ns, k) for k in expected} == expected


def test_a_model_file_is_accepted_by_path(tmp_path: Any) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"")
    ns = _parser().parse_args(["engine", "serve", "--model", str(gguf)])
    assert ns.model == str(gguf)


HELP = [
    [],
    ["run"],
    ["graph"],
    ["demo"],
    ["model"],
    ["model", "make"],
    ["model", "train"],
    ["engine"],
    ["engine", "serve"],
    ["sql"],
    ["sql", "ask"],
    ["sql", "eval"],
    ["sql", "databases"],
    ["bench"],
]


@pytest.mark.parametrize("command", HELP, ids=[" ".join(c) or "legato" for c in HELP])
def test_help_still_works(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: legato")


# -- the same checks where the CLI's values arrive: the engine and the benchmarks --------------
@pytest.mark.parametrize("name", ["max_batch", "max_step_tokens", "context_length"])
def test_the_engine_refuses_a_size_below_one(name: str) -> None:
    from orchestrator.engine import virtual_engine

    sizes: dict[str, Any] = {name: 0}
    with pytest.raises(ValueError, match=f"{name} must be >= 1, got 0"):
        virtual_engine(**sizes)


def test_bench_sched_main_refuses_bad_values() -> None:
    from orchestrator.bench.sched import main as sched_main

    base = dict(_parser().parse_args(["bench", "sched"]).__dict__)
    for name, value in [("replicas", 0), ("max_batch", 0), ("programs", 0), ("rate", 0.0)]:
        args = argparse.Namespace(**{**base, name: value})
        with pytest.raises(ConfigError, match=name):
            sched_main(args)


def test_bench_text2sql_main_does_not_turn_zero_into_the_default() -> None:
    from orchestrator.bench.text2sql import main as text2sql_main

    base = dict(_parser().parse_args(["bench", "text2sql"]).__dict__)
    for name, value in [("queries", 0), ("slo_scale", 0.0), ("fail_rate", 2.0), ("rate", -1.0)]:
        args = argparse.Namespace(**{**base, name: value})
        with pytest.raises(ConfigError, match=name):
            text2sql_main(args)


def test_bench_entry_points_refuse_bad_values() -> None:
    from orchestrator.bench import engine, model, overhead

    with pytest.raises(ConfigError, match="n must be >= 1"):
        overhead.main(0, None)
    with pytest.raises(ConfigError, match="repeats must be >= 1"):
        engine.main(None, models=["tiny"], repeats=0)
    with pytest.raises(ConfigError, match="'nosuch'"):
        engine.main(None, models=["nosuch"])
    with pytest.raises(ConfigError, match="train_minutes must be > 0"):
        model.main(None, train_minutes=-1.0)


def test_sql_settings_keep_a_zero_instead_of_the_default() -> None:
    from integrations.text2sql._cli import settings_from

    for name in ("candidates", "max_tokens", "time_limit"):
        with pytest.raises(ConfigError, match=name):
            settings_from(argparse.Namespace(**{name: 0}))
    assert settings_from(argparse.Namespace(rounds=0)).rounds == 0
