"""``legato engine serve`` over real HTTP on 127.0.0.1: the OpenAI-compatible API, hints,
streaming, bad input, disconnects, and many concurrent clients."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import openai
import pytest

import orchestrator
from orchestrator.backends import Hints, OpenAICompatible
from orchestrator.cli import load_program
from orchestrator.engine import Engine, EngineTokenizer, GGUFModel, LlamaModel
from orchestrator.engine._server import create_app
from orchestrator.testing import EngineServer

pytestmark = pytest.mark.http


@pytest.fixture(scope="module")
def server() -> Iterator[EngineServer]:
    with EngineServer("tiny", args=("--kv-tokens", "2048")) as s:
        yield s


@pytest.fixture
def client(server: EngineServer) -> Iterator[openai.OpenAI]:
    with httpx.Client() as http:
        yield openai.OpenAI(base_url=server.url, api_key="x", http_client=http, max_retries=0)


def metrics(server: EngineServer) -> dict[str, float]:
    text = httpx.get(f"{server.base}/metrics").text
    return {k: float(v) for k, v in (ln.split() for ln in text.splitlines() if ln[:1] != "#")}


def test_health_and_models(server: EngineServer) -> None:
    assert httpx.get(f"{server.base}/health").json() == {"status": "ok"}
    models = httpx.get(f"{server.url}/models").json()["data"]
    assert [m["id"] for m in models] == ["tiny"] and models[0]["owned_by"] == "legato"


def test_completions_and_chat_report_usage(client: openai.OpenAI) -> None:
    out = client.completions.create(
        model="tiny",
        prompt="SELECT name",
        max_tokens=8,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert out.usage is not None and out.usage.completion_tokens == 8
    assert out.choices[0].finish_reason == "length"
    chat = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=5,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert chat.usage is not None and chat.usage.completion_tokens == 5
    assert chat.choices[0].message.role == "assistant"


def test_streaming_matches_the_whole_answer(client: openai.OpenAI) -> None:
    args = {
        "model": "tiny",
        "prompt": "the quick brown fox",
        "max_tokens": 20,
        "temperature": 0,
        "extra_body": {"ignore_eos": True},
    }
    whole = client.completions.create(**args).choices[0].text  # type: ignore[call-overload]
    pieces = []
    usage = None
    for chunk in client.completions.create(
        stream=True, stream_options={"include_usage": True}, **args
    ):  # type: ignore[call-overload]
        pieces += [c.text for c in chunk.choices]
        usage = chunk.usage or usage
    assert "".join(pieces) == whole
    assert usage is not None and usage.completion_tokens == 20


def test_choice_constraint(client: openai.OpenAI) -> None:
    for seed in range(3):
        out = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "pick"}],
            max_tokens=10,
            seed=seed,
            extra_body={"structured_outputs": {"choice": ["red", "green", "blue"]}},
        )
        assert out.choices[0].message.content in {"red", "green", "blue"}


def test_structured_outputs_regex_json_and_lark(client: openai.OpenAI) -> None:
    def ask(constraint: dict[str, object], seed: int = 0) -> str:
        out = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "go"}],
            max_tokens=48,
            seed=seed,
            extra_body={"structured_outputs": constraint},
        )
        return out.choices[0].message.content or ""

    for seed in range(3):
        assert re.fullmatch(r"[0-9]{3}-[a-z]{2}", ask({"regex": "[0-9]{3}-[a-z]{2}"}, seed))
        value = json.loads(ask({"json": {"type": "array", "items": {"type": "boolean"}}}, seed))
        assert isinstance(value, list) and all(isinstance(v, bool) for v in value)
        assert ask({"grammar": 'start: "go " ("left" | "right") "!"'}, seed) in {
            "go left!",
            "go right!",
        }


def test_structured_outputs_bad_input_gets_a_400_naming_it(server: EngineServer) -> None:
    def post(so: object) -> httpx.Response:
        body = {"prompt": "x", "max_tokens": 4, "structured_outputs": so}
        return httpx.post(f"{server.url}/completions", json=body)

    r = post({"grammar": 'start: "a"\nb: (('})
    assert r.status_code == 400 and "line 2" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "structured_outputs.grammar"
    r = post({"grammar": 'root ::= "a"'})
    assert r.status_code == 400 and "does not read GBNF" in r.json()["error"]["message"]
    r = post({"ebnf": "x"})
    assert r.status_code == 400 and "structured_outputs.ebnf" in r.json()["error"]["message"]
    r = post({"regex": "a", "choice": ["a"]})
    assert r.status_code == 400 and "exactly one" in r.json()["error"]["message"]


def test_prompt_longer_than_the_context(server: EngineServer) -> None:
    r = httpx.post(f"{server.url}/completions", json={"prompt": list(range(1, 2100))})
    assert r.status_code == 400
    assert "2099 tokens but the context holds 2048" in r.json()["error"]["message"]


def test_unknown_model_is_404(server: EngineServer) -> None:
    r = httpx.post(f"{server.url}/completions", json={"model": "gpt-9", "prompt": "x"})
    assert r.status_code == 404 and "gpt-9" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x", "max_tokens": "many"}, "max_tokens"),
        ({"prompt": "x", "temperature": 5}, "temperature"),
        ({"max_tokens": 3}, "prompt"),
        ({"prompt": "x", "stop": 3}, "stop"),
    ],
)
def test_wrong_fields_name_the_field(
    server: EngineServer, body: dict[str, object], field: str
) -> None:
    r = httpx.post(f"{server.url}/completions", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"].startswith(field) and field in err["message"]


def test_malformed_json(server: EngineServer) -> None:
    r = httpx.post(
        f"{server.url}/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{server.url}/chat/completions", json={"messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_bad_priority_header(server: EngineServer) -> None:
    r = httpx.post(
        f"{server.url}/completions", json={"prompt": "x"}, headers={"X-Vllm-Priority": "soon"}
    )
    assert r.status_code == 400 and "X-Vllm-Priority".lower() in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "param"),
    [
        ({"X-Legato-Promote-After": "soon"}, "x-legato-promote-after"),
        ({"X-Legato-Promote-After": "-1"}, "x-legato-promote-after"),
        ({"X-Legato-Promote-After": "1", "X-Legato-Promote-To": "top"}, "x-legato-promote-to"),
        ({"X-Legato-Promote-To": "0"}, "x-legato-promote-to"),
        ({"X-Legato-KV-TTL": "nan"}, "x-legato-kv-ttl"),
        ({"X-Legato-KV-TTL": "30"}, "x-legato-kv-ttl"),  # no program: whose cache to keep?
        ({"X-Legato-Demote": "soon"}, "x-legato-demote"),
        ({"X-Legato-Demote": "0.5:1,0.2:2"}, "x-legato-demote"),
        ({"X-Legato-Demote": "-1:3"}, "x-legato-demote"),
        ({"X-Legato-Demote": "1:low"}, "x-legato-demote"),
    ],
)
def test_bad_promotion_headers(server: EngineServer, headers: dict[str, str], param: str) -> None:
    r = httpx.post(f"{server.url}/completions", json={"prompt": "x"}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_promotion_headers_are_accepted(server: EngineServer) -> None:
    hints = Hints(
        program="p", thread="t", priority=7, promote_after=0.5, promote_to=0, demote=((1.5, 8),)
    )
    r = httpx.post(
        f"{server.url}/completions",
        json={"prompt": "x", "max_tokens": 2},
        headers=hints.headers(),
    )
    assert r.status_code == 200, r.text


def test_a_released_program_loses_its_pins(server: EngineServer) -> None:
    before = metrics(server)
    r = httpx.post(
        f"{server.url}/completions",
        json={"prompt": "the quick brown fox jumps " * 8, "max_tokens": 2},
        headers={"X-Legato-Program": "released", "X-Legato-KV-TTL": "600"},
    )
    assert r.status_code == 200, r.text
    assert metrics(server)["legato_engine_kv_pinned_blocks"] > 0  # held for 10 minutes
    r = httpx.post(f"{server.url}/legato/release", json={"program": "released"})
    assert r.status_code == 200, r.text
    assert r.json()["program"] == "released" and r.json()["pins_dropped"] > 0
    after = metrics(server)
    assert after["legato_engine_kv_pinned_blocks"] == 0
    released = "legato_engine_released_programs_total"
    assert after[released] == before[released] + 1


@pytest.mark.parametrize(
    ("body", "param"),
    [({}, "program"), ({"program": ""}, "program"), ({"program": "p", "x": 1}, "x")],
)
def test_a_bad_release_is_refused_naming_the_field(
    server: EngineServer, body: dict[str, object], param: str
) -> None:
    r = httpx.post(f"{server.url}/legato/release", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_the_orchestrator_releases_each_program_it_ran(server: EngineServer) -> None:
    released = "legato_engine_released_programs_total"
    before = metrics(server)[released]

    async def main() -> None:
        triage = load_program("examples/triage.py")
        backend = OpenAICompatible(server.url)
        async with backend, orchestrator.Orchestrator(backend) as orch:
            handles = [await orch.submit(triage, f"ticket {i}") for i in range(3)]
            for h in handles:
                await h.result()

    anyio.run(main)
    assert metrics(server)[released] == before + 3


def test_a_release_that_fails_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with OpenAICompatible("http://127.0.0.1:9", dialect="legato") as backend:
            await backend.release_program("gone")  # nothing listens on port 9

    with caplog.at_level("WARNING", logger="legato"):
        anyio.run(main)
    assert "could not release program 'gone'" in caplog.text


def assert_aborted_early(
    server: EngineServer, before: dict[str, float], *, max_tokens: int
) -> None:
    """Within 5 s of its client leaving, the one request since ``before`` was aborted well short
    of ``max_tokens``: nothing runs and every KV block is free again."""
    for _ in range(100):
        m = metrics(server)
        if (
            m["legato_engine_running"] == 0
            and m["legato_engine_aborted_total"] > before["legato_engine_aborted_total"]
        ):
            break
        anyio.run(anyio.sleep, 0.05)
    assert m["legato_engine_running"] == 0
    assert m["legato_engine_aborted_total"] == before["legato_engine_aborted_total"] + 1
    assert (
        m["legato_engine_generated_tokens_total"]
        < before["legato_engine_generated_tokens_total"] + max_tokens
    )
    assert m["legato_engine_kv_free_blocks"] == m["legato_engine_kv_total_blocks"]


def test_a_client_that_disconnects_mid_stream_frees_its_sequence(server: EngineServer) -> None:
    before = metrics(server)
    body = {
        "prompt": "go on",
        "max_tokens": 1500,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream("POST", f"{server.url}/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                break  # one token, then hang up
    assert_aborted_early(server, before, max_tokens=1500)


def test_a_client_that_hangs_up_before_the_answer_frees_its_sequence(
    server: EngineServer,
) -> None:
    """A non-streamed request whose client gives up (a timeout, then perhaps a retry) is
    aborted at once, not generated to ``max_tokens`` for nobody."""
    before = metrics(server)
    body = {"prompt": "go on", "max_tokens": 1500, "temperature": 0, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/completions", json=body, timeout=httpx.Timeout(5, read=0.3))
    assert_aborted_early(server, before, max_tokens=1500)


def test_64_concurrent_requests_are_all_answered(server: EngineServer) -> None:
    # 64 x (prompt + 40 tokens) is more than the 2048-token KV budget: requests wait their turn
    async def main() -> list[int]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as c:
            out: list[int] = []

            async def one(i: int) -> None:
                r = await c.post(
                    f"{server.url}/completions",
                    json={
                        "prompt": f"request {i} " * 8,
                        "max_tokens": 40,
                        "temperature": 0,
                        "ignore_eos": True,
                    },
                )
                r.raise_for_status()
                out.append(r.json()["usage"]["completion_tokens"])

            async with anyio.create_task_group() as tg:
                for i in range(64):
                    tg.start_soon(one, i)
            return out

    assert anyio.run(main) == [40] * 64
    assert metrics(server)["legato_engine_kv_free_blocks"] == 2048 // 16


def test_hints_reach_the_engine_and_examples_run_over_http(server: EngineServer) -> None:
    async def main() -> tuple[object, str]:
        async with OpenAICompatible(server.url) as backend:
            async with orchestrator.Orchestrator(backend) as orch:
                triage = load_program("examples/triage.py")
                h = await orch.submit(triage, "my invoice is wrong")
                out = await h.result()
            return out, backend.dialect

    out, dialect = anyio.run(main)
    assert dialect == "legato"
    assert isinstance(out, dict) and out["label"] in {"bug", "billing", "other"}


def test_echo_is_refused_not_ignored(server: EngineServer) -> None:
    r = httpx.post(f"{server.url}/completions", json={"prompt": "x", "echo": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "echo"


def walks(server: EngineServer, grammar: str, max_tokens: int, **fields: Any) -> list[str]:
    """Eight sampled walks (seeds 0-7) through the backend's ``legato`` dialect, under the Lark
    ``grammar``, with ``fields`` of ``LLMRequest`` (the searches the engine reads from the
    body)."""
    import dsl
    from orchestrator.backends import LLMRequest

    async def main() -> list[str]:
        async with OpenAICompatible(server.url) as backend:
            out = []
            for seed in range(8):
                req = LLMRequest(
                    prompt=f"walk {seed}:",
                    max_tokens=max_tokens,
                    temperature=1.0,
                    seed=seed,
                    grammar=dsl.Grammar.lark(grammar),
                    **fields,
                )
                out.append((await backend.complete(req)).text)
            return out

    return anyio.run(main)


def test_distinct_lines_reach_the_engine_from_the_backend(server: EngineServer) -> None:
    """``LLMRequest.distinct_lines`` travels as the body field of the ``legato`` dialect; the
    engine rewinds repeated lines (random weights repeat a letter in most of these walks)."""
    letters = 'start: "1." L "\\n2." L "\\n3." L "\\n"\nL: "x" | "y" | "z"'
    before = metrics(server).get("legato_engine_rewinds_total", 0.0)
    for text in walks(server, letters, 40, distinct_lines=True):
        assert sorted(line[2:] for line in text.splitlines()) == ["x", "y", "z"], text
    assert metrics(server)["legato_engine_rewinds_total"] > before


def test_required_strings_reach_the_engine_from_the_backend(server: EngineServer) -> None:
    """``LLMRequest.require`` and ``require_anywhere`` travel as body fields of the ``legato``
    dialect: each output holds the required letter (random weights leave it out of many
    walks)."""
    three = 'start: L L L\nL: "x" | "y" | "z"'
    assert any("z" not in t for t in walks(server, three, 8)), "the test would show nothing"
    assert all("z" in t for t in walks(server, three, 8, require=("z",)))
    assert all("z" in t for t in walks(server, three, 8, require_anywhere=("z",)))


def test_alike_lines_reach_the_engine_from_the_backend(server: EngineServer) -> None:
    """``LLMRequest.alike`` travels as a body field of the ``legato`` dialect: the lines after
    the one that writes ``a`` read as it does (random weights mix the forms)."""
    grammar = 'start: "- " F "(a)\\n" ("- " F "(" W ")\\n")~2\nF: "f" | "g" | "h"\nW: "b" | "c"'

    def alike(t: str) -> bool:
        f = t[2]
        return t == f"- {f}(a)\n- {f}(b)\n- {f}(c)\n"

    assert sum(not alike(t) for t in walks(server, grammar, 24)) >= 4, "it would show little"
    assert all(alike(t) for t in walks(server, grammar, 24, alike=(("a", "b", "c"),)))


@pytest.mark.parametrize(
    ("alike", "message"),
    [
        ([["a"]], "needs two or more non-empty strings"),
        ([["a", ""]], "needs two or more non-empty strings"),
        ([["a", "b"]] * 17, "alike"),
        ("a, b", "alike"),
    ],
)
def test_a_bad_alike_field_is_refused(server: EngineServer, alike: object, message: str) -> None:
    r = httpx.post(f"{server.url}/completions", json={"prompt": "x", "alike": alike})
    assert r.status_code == 400 and message in r.text, r.text
    assert r.json()["error"]["param"] == "alike"


@pytest.mark.parametrize(
    "bias",
    [
        '{"99999999": 1}',
        '{"2048": 1}',
        '{"-1": 1}',
        '{"5": 101}',
        '{"5": -1e308}',
        '{"5": Infinity}',  # not JSON, but Python's json module reads it
        '{"5": NaN}',
    ],
)
def test_a_bad_logit_bias_is_refused_and_the_engine_keeps_serving(
    server: EngineServer, bias: str
) -> None:
    r = httpx.post(
        f"{server.url}/completions",
        content=f'{{"prompt": "hi", "max_tokens": 2, "logit_bias": {bias}}}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "logit_bias", r.text
    r = httpx.post(f"{server.url}/completions", json={"prompt": "hi", "max_tokens": 2}, timeout=30)
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] != "abort", r.text


def test_a_logit_bias_in_range_is_used(server: EngineServer) -> None:
    body = {"prompt": "hi", "max_tokens": 3, "temperature": 0, "ignore_eos": True}
    plain = httpx.post(f"{server.url}/completions", json=body).json()["choices"][0]["text"]
    forced = httpx.post(
        f"{server.url}/completions",
        json={**body, "logit_bias": {"65": 100}, "logprobs": 0},  # 65 is "A" in the tiny vocab
    )
    assert forced.status_code == 200, forced.text
    tokens = forced.json()["choices"][0]["logprobs"]["tokens"]
    assert len(set(tokens)) == 1 and "".join(tokens) != plain


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_a_seed_out_of_range_is_refused(server: EngineServer, seed: int) -> None:
    r = httpx.post(f"{server.url}/completions", json={"prompt": "x", "seed": seed})
    assert r.status_code == 400 and r.json()["error"]["param"] == "seed", r.text
    assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize("text", [5, None, ["a"]])
def test_a_content_part_whose_text_is_not_a_string_is_refused(
    server: EngineServer, text: object
) -> None:
    parts = [{"type": "text", "text": "hi "}, {"type": "text", "text": text}]
    r = httpx.post(
        f"{server.url}/chat/completions",
        json={"messages": [{"role": "user", "content": parts}], "max_tokens": 2},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "messages.0.content", r.text


def test_content_parts_of_text_are_joined(server: EngineServer) -> None:
    parts = [{"type": "text", "text": "hi "}, {"type": "image_url"}, {"type": "text", "text": "x"}]
    r = httpx.post(
        f"{server.url}/chat/completions",
        json={"messages": [{"role": "user", "content": parts}], "max_tokens": 2},
    )
    assert r.status_code == 200, r.text


def test_a_wrong_method_gets_an_openai_error(server: EngineServer) -> None:
    r = httpx.get(f"{server.url}/completions")
    assert r.status_code == 405 and r.headers["allow"] == "POST", r.text
    assert r.json()["error"]["code"] == 405 and "GET" in r.json()["error"]["message"]


@pytest.mark.parametrize("stop", ["", [""], ["end", ""]])
def test_an_empty_stop_string_is_refused(server: EngineServer, stop: object) -> None:
    r = httpx.post(f"{server.url}/completions", json={"prompt": "x", "stop": stop})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stop", r.text


def test_an_empty_program_header_is_refused(server: EngineServer) -> None:
    r = httpx.post(
        f"{server.url}/completions",
        json={"prompt": "x", "max_tokens": 2},
        headers={"X-Legato-Program": "", "X-Legato-KV-TTL": "60"},  # the TTL would be dropped
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "x-legato-program", r.text


@contextlib.asynccontextmanager
async def in_process(
    tiny: GGUFModel, tokenizer: EngineTokenizer
) -> AsyncIterator[tuple[Engine, httpx.AsyncClient]]:
    """The server's app on the tiny model in this process, its lifespan running (so the engine
    serves), and a client that calls it without a socket."""
    engine = Engine(
        LlamaModel(tiny, num_blocks=64, block_size=16),
        tokenizer,
        num_blocks=64,
        block_size=16,
        context_length=1024,
    )
    app = create_app(engine, "tiny")
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://engine.test")
    async with app.router.lifespan_context(app), client:
        yield engine, client


async def fail_step() -> None:
    raise RuntimeError("the step failed")


@pytest.mark.anyio
async def test_a_request_the_engine_aborts_gets_a_503_not_a_finish_reason(
    tiny: GGUFModel, tokenizer: EngineTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with in_process(tiny, tokenizer) as (engine, client):
        monkeypatch.setattr(engine, "_step", fail_step)  # the request in flight is aborted
        with anyio.fail_after(30):
            r = await client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 4})
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["type"] == "server_error" and "RuntimeError: the step failed" in err["message"]


@pytest.mark.anyio
async def test_after_the_engine_fails_health_and_requests_get_a_503(
    tiny: GGUFModel,
    tokenizer: EngineTokenizer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with in_process(tiny, tokenizer) as (engine, client):
        r = await client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2})
        assert r.status_code == 200 and (await client.get("/health")).status_code == 200
        monkeypatch.setattr(engine, "_step", fail_step)
        with caplog.at_level("ERROR", logger="legato"), anyio.fail_after(30):
            await client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2})
            r = await client.get("/health")
            assert r.status_code == 503 and "the step failed" in r.json()["error"]["message"]
            for stream in (False, True):  # not waiting forever for a step loop that has ended
                r = await client.post(
                    "/v1/completions", json={"prompt": "hi", "max_tokens": 2, "stream": stream}
                )
                assert r.status_code == 503 and "the step failed" in r.text, r.text
    assert "the engine's step loop failed" in caplog.text


@pytest.mark.anyio
async def test_a_stream_the_engine_aborts_ends_with_an_error_event(
    tiny: GGUFModel, tokenizer: EngineTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streamed, the 200 is sent already: the stream ends with an error event (as OpenAI's and
    vLLM's do, and which OpenAI's client raises), not a finish_reason of "abort"."""
    async with in_process(tiny, tokenizer) as (engine, client):
        step = engine._step
        steps = 0

        async def fails_at_the_fourth() -> None:  # a few tokens are out by then
            nonlocal steps
            steps += 1
            if steps >= 4:
                await fail_step()
            await step()

        monkeypatch.setattr(engine, "_step", fails_at_the_fourth)
        with anyio.fail_after(30):
            r = await client.post(
                "/v1/completions",
                json={"prompt": "hi", "max_tokens": 50, "stream": True, "ignore_eos": True},
            )
        events = [
            ln.removeprefix("data: ") for ln in r.text.splitlines() if ln.startswith("data: ")
        ]
    assert r.status_code == 200 and len(events) >= 3, r.text  # tokens, then the error
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == 503 and "the step failed" in error["message"]
    assert '"abort"' not in "".join(events)
    sdk = openai.AsyncOpenAI(
        base_url="http://engine.test/v1",
        api_key="x",
        max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(lambda _: sse_reply(events))),
    )
    with pytest.raises(openai.APIError, match="the step failed"):
        async for _ in await sdk.completions.create(model="tiny", prompt="hi", stream=True):
            pass
    await sdk.close()


def sse_reply(events: list[str]) -> httpx.Response:
    body = "".join(f"data: {e}\n\n" for e in events)
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=body)


@pytest.mark.anyio
async def test_a_request_the_engine_fails_alone_gets_a_500_and_the_rest_go_on(
    tiny: GGUFModel, tokenizer: EngineTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with in_process(tiny, tokenizer) as (engine, client):
        accept = engine._accept

        def fails(s: Any, *args: Any) -> None:
            if s.req.params.max_tokens == 7:  # the one request to fail
                raise RuntimeError("this request's step broke")
            accept(s, *args)

        monkeypatch.setattr(engine, "_accept", fails)
        with anyio.fail_after(30):
            bad = {"prompt": "hi", "max_tokens": 7}
            r = await client.post("/v1/completions", json=bad)
            assert r.status_code == 500, r.text
            err = r.json()["error"]
            assert err["type"] == "server_error" and "this request's step broke" in err["message"]
            r = await client.post("/v1/completions", json={**bad, "stream": True})
            events = [ln for ln in r.text.splitlines() if ln.startswith("data: ")]
            error = json.loads(events[-2].removeprefix("data: "))["error"]
            assert error["code"] == 500 and "this request's step broke" in error["message"]
            r = await client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2})
            assert r.status_code == 200 and (await client.get("/health")).status_code == 200


def test_the_demotion_header_reads_back_what_hints_write() -> None:
    from orchestrator.engine._server import _demote_header

    steps = ((0.5, 1), (1234.568, 2), (123456.7, 3), (123456.9, 4))
    headers = Hints(program="p", thread="t", demote=steps).headers()
    sent = SimpleNamespace(headers={"x-legato-demote": headers["X-Legato-Demote"]})
    assert _demote_header(sent) == steps  # type: ignore[arg-type]
    spaced = SimpleNamespace(headers={"x-legato-demote": "0.5:1, 1.5:2"})
    assert _demote_header(spaced) == ((0.5, 1), (1.5, 2))  # type: ignore[arg-type]
    assert _demote_header(SimpleNamespace(headers={})) == ()  # type: ignore[arg-type]
