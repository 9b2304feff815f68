"""Wire tests for ``OpenAICompatible`` over ``httpx.MockTransport``: exact payloads per dialect."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import openai
import pytest

import dsl
from orchestrator import constrain
from orchestrator.backends import (
    Backend,
    Completion,
    Hints,
    LLMRequest,
    Message,
    OpenAICompatible,
)
from orchestrator.errors import (
    BackendError,
    BackendRejected,
    BackendTimeout,
    ConfigError,
    GrammarUnsupported,
)

BASE = "http://engine.test:8000"
URL = BASE + "/v1"
HINTS = Hints(program="prog-1", thread="t0", priority=3)
LEGATO_HEADERS = {
    "x-legato-program": "prog-1",
    "x-legato-thread": "t0",
    "x-legato-priority": "3",
}

CHAT_REPLY = {
    "id": "c1",
    "object": "chat.completion",
    "created": 0,
    "model": "m1",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hello"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}
TEXT_REPLY = {
    "id": "c2",
    "object": "text_completion",
    "created": 0,
    "model": "m1",
    "choices": [{"index": 0, "text": " world", "finish_reason": "length", "logprobs": None}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
}

Handler = Callable[[httpx.Request], httpx.Response]


def chat_request(**kw: Any) -> LLMRequest:
    return LLMRequest(messages=(Message("user", "hi"),), hints=HINTS, **kw)


def sse(*events: object) -> httpx.Response:
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


class FakeEngine:
    """A scripted OpenAI-compatible server recording every request it gets."""

    def __init__(self, owned_by: str = "vllm", models: tuple[str, ...] = ("m1",)) -> None:
        self.owned_by = owned_by
        self.models = models
        self.requests: list[httpx.Request] = []
        self.reply: Handler | None = None  # overrides the completion endpoints

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/v1/models":
            await anyio.lowlevel.checkpoint()  # let concurrent first calls interleave
            data = [{"id": m, "object": "model", "owned_by": self.owned_by} for m in self.models]
            return httpx.Response(200, json={"object": "list", "data": data})
        if self.reply is not None:
            return self.reply(request)
        if path == "/v1/chat/completions":
            return httpx.Response(200, json=CHAT_REPLY)
        if path == "/v1/completions":
            return httpx.Response(200, json=TEXT_REPLY)
        return httpx.Response(404, json={"error": {"message": f"no route {path}"}})

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_body(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.last().content)
        return body


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def client(engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(engine)) as c:
        yield c


def dialect_of(b: OpenAICompatible) -> str:
    """``b.dialect``, read through a call so mypy does not keep an earlier narrowing."""
    return b.dialect


def make(client: httpx.AsyncClient, dialect: Any = "vllm", **kw: Any) -> OpenAICompatible:
    kw.setdefault("model", "m1")
    return OpenAICompatible(BASE, dialect=dialect, http_client=client, **kw)


# -- construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("http://h:8000", "http://h:8000/v1"),
        ("http://h:8000/", "http://h:8000/v1"),
        ("http://h:8000/v1", "http://h:8000/v1"),
        ("http://h:8000/v1/", "http://h:8000/v1"),
        ("https://api.example.com/v1", "https://api.example.com/v1"),
        ("http://h/openai/v1", "http://h/openai/v1"),
    ],
)
def test_base_url_is_normalised(given: str, normalised: str) -> None:
    b = OpenAICompatible(given, model="m")
    assert b.base_url == normalised
    assert b.name == normalised


@pytest.mark.parametrize("bad", ["localhost:8000", "not a url", "http://", "ftp://h/v1", ""])
def test_bad_url_is_a_config_error_naming_it(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid backend URL") as info:
        OpenAICompatible(bad)
    assert repr(bad) in str(info.value)


def test_unknown_dialect_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tgi"):
        OpenAICompatible(BASE, dialect="tgi")  # type: ignore[arg-type]


def test_satisfies_the_backend_protocol_and_is_named() -> None:
    b = OpenAICompatible(BASE, dialect="vllm", name="gpu-0")
    assert isinstance(b, Backend)
    assert b.name == "gpu-0"
    assert b.dialect == "vllm"


# -- payloads per dialect ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_vllm_chat_payload_and_headers(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    b = make(client, "vllm", api_key="sk-1")
    out = await b.complete(
        chat_request(max_tokens=16, temperature=0.0, top_p=0.9, stop=("\n",), seed=7)
    )
    assert out == Completion(
        text="hello", prompt_tokens=5, completion_tokens=2, finish_reason="stop"
    )
    req = engine.last()
    assert req.method == "POST"
    assert str(req.url) == URL + "/chat/completions"
    assert engine.last_body() == {
        "model": "m1",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
        "temperature": 0.0,
        "top_p": 0.9,
        "stop": ["\n"],
        "seed": 7,
    }
    for k, v in LEGATO_HEADERS.items():
        assert req.headers[k] == v
    assert req.headers["x-vllm-priority"] == "3"
    assert req.headers["authorization"] == "Bearer sk-1"
    assert "x-legato-kv-ttl" not in req.headers
    assert engine.paths() == ["/v1/chat/completions"]  # dialect and model given: no probe


@pytest.mark.anyio
async def test_text_completion_sends_only_given_fields(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    b = make(client, "vllm")
    hints = Hints(program="p", thread="t", priority=-2, kv_ttl=30.0)
    out = await b.complete(LLMRequest(prompt="Hello", hints=hints))
    assert out == Completion(
        text=" world", prompt_tokens=3, completion_tokens=4, finish_reason="length"
    )
    req = engine.last()
    assert str(req.url) == URL + "/completions"
    assert engine.last_body() == {"model": "m1", "prompt": "Hello"}
    assert req.headers["x-vllm-priority"] == "-2"
    assert req.headers["x-legato-priority"] == "-2"
    assert req.headers["x-legato-kv-ttl"] == "30"
    assert req.headers["authorization"] == "Bearer EMPTY"


@pytest.mark.anyio
async def test_request_model_overrides_default(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    await make(client, "vllm").complete(chat_request(model="other"))
    assert engine.last_body()["model"] == "other"


@pytest.mark.anyio
async def test_sglang_priority_is_negated_in_the_body(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    await make(client, "sglang").complete(chat_request(max_tokens=4))
    assert engine.last_body() == {
        "model": "m1",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "priority": -3,
    }
    assert "x-vllm-priority" not in engine.last().headers
    for k, v in LEGATO_HEADERS.items():
        assert engine.last().headers[k] == v


@pytest.mark.anyio
async def test_llamacpp_caches_prompt_and_has_no_priority(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    await make(client, "llamacpp").complete(LLMRequest(prompt="x", max_tokens=4, hints=HINTS))
    assert engine.last_body() == {
        "model": "m1",
        "prompt": "x",
        "max_tokens": 4,
        "cache_prompt": True,
    }
    assert "x-vllm-priority" not in engine.last().headers
    assert engine.last().headers["x-legato-priority"] == "3"


@pytest.mark.anyio
async def test_openai_sends_no_extra_fields(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    b = make(client, "openai")
    await b.complete(
        chat_request(max_tokens=8, temperature=0.5, top_p=1.0, stop=("a", "b"), seed=1)
    )
    body = engine.last_body()
    assert set(body) == {"model", "messages", "max_tokens", "temperature", "top_p", "stop", "seed"}
    assert body["max_tokens"] == 8
    assert body["stop"] == ["a", "b"]
    assert "x-vllm-priority" not in engine.last().headers
    for k, v in LEGATO_HEADERS.items():
        assert engine.last().headers[k] == v

    await b.complete(LLMRequest(prompt="p", max_tokens=8, hints=HINTS))
    assert engine.last_body() == {"model": "m1", "prompt": "p", "max_tokens": 8}


@pytest.mark.anyio
async def test_openai_api_itself_gets_max_completion_tokens(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    # OpenAI deprecated max_tokens in chat; servers that only look like OpenAI keep max_tokens.
    b = OpenAICompatible(
        "https://api.openai.com/v1", model="m1", dialect="openai", http_client=client
    )
    await b.complete(chat_request(max_tokens=8))
    assert engine.last_body() == {
        "model": "m1",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 8,
    }


# -- choice constraints ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_legato_sends_its_headers_and_structured_output_choices(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    await make(client, "legato").complete(
        chat_request(max_tokens=4, grammar=dsl.Grammar.choice(("yes", "no")))
    )
    assert engine.last_body() == {
        "model": "m1",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "structured_outputs": {"choice": ["yes", "no"]},
    }
    assert "x-vllm-priority" not in engine.last().headers
    for k, v in LEGATO_HEADERS.items():
        assert engine.last().headers[k] == v


@pytest.mark.anyio
async def test_vllm_choices_are_structured_outputs(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    await make(client, "vllm").complete(chat_request(grammar=dsl.Grammar.choice(("yes", "no"))))
    body = engine.last_body()
    assert body["structured_outputs"] == {"choice": ["yes", "no"]}
    assert "priority" not in body


@pytest.mark.anyio
async def test_sglang_choices_are_an_escaped_regex(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    await make(client, "sglang").complete(
        chat_request(grammar=dsl.Grammar.choice(("yes", "a.b", "c|d", "(x)")))
    )
    body = engine.last_body()
    assert body["regex"] == r"(yes|a\.b|c\|d|\(x\))"
    assert body["priority"] == -3


@pytest.mark.anyio
async def test_llamacpp_choices_are_a_gbnf_grammar(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    choices = ("yes", 'say "hi"', "back\\slash", "two\nlines", "tab\there")
    await make(client, "llamacpp").complete(chat_request(grammar=dsl.Grammar.choice(choices)))
    body = engine.last_body()
    assert body["grammar"] == constrain.choice_to_gbnf(choices)
    assert body["cache_prompt"] is True


# -- grammars in each dialect's field ------------------------------------------------------------

PLAN = dsl.Grammar.lark('start: "yes" | "no" NUM\nNUM: /[0-9]+/')
DIGITS = dsl.Grammar.regex(r"[0-9]{3}")
SCHEMA = dsl.Grammar.json_schema(
    {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("dialect", "grammar", "expected"),
    [
        ("legato", PLAN, {"structured_outputs": {"grammar": PLAN.source}}),
        ("legato", DIGITS, {"structured_outputs": {"regex": "[0-9]{3}"}}),
        ("legato", SCHEMA, {"structured_outputs": {"json": SCHEMA.schema}}),
        ("vllm", PLAN, {"structured_outputs": {"grammar": constrain.lark_to_gbnf(PLAN.source)}}),
        ("vllm", DIGITS, {"structured_outputs": {"regex": "[0-9]{3}"}}),
        ("vllm", SCHEMA, {"structured_outputs": {"json": SCHEMA.schema}}),
        ("sglang", PLAN, {"ebnf": constrain.lark_to_gbnf(PLAN.source)}),
        ("sglang", DIGITS, {"regex": "[0-9]{3}"}),
        ("sglang", SCHEMA, {"json_schema": SCHEMA.source}),
        ("llamacpp", PLAN, {"grammar": constrain.lark_to_gbnf(PLAN.source)}),
        ("llamacpp", DIGITS, {"grammar": constrain.regex_grammar("[0-9]{3}")}),
        ("llamacpp", SCHEMA, {"json_schema": SCHEMA.schema}),
        (
            "openai",
            SCHEMA,
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": SCHEMA.schema, "strict": True},
                }
            },
        ),
    ],
)
async def test_each_dialect_carries_the_grammar_in_its_own_field(
    client: httpx.AsyncClient,
    engine: FakeEngine,
    dialect: str,
    grammar: dsl.Grammar,
    expected: dict[str, Any],
) -> None:
    await make(client, dialect).complete(chat_request(grammar=grammar))
    body = engine.last_body()
    for key, value in expected.items():
        assert body[key] == value
    other = {"structured_outputs", "ebnf", "regex", "json_schema", "grammar", "response_format"}
    assert not (other - set(expected)) & set(body)


@pytest.mark.anyio
async def test_openai_cannot_carry_a_lark_grammar_and_nothing_is_sent(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    with pytest.raises(GrammarUnsupported, match="lark"):
        await make(client, "openai").complete(chat_request(grammar=PLAN))
    assert engine.requests == []


@pytest.mark.anyio
async def test_a_400_to_a_constrained_request_means_the_grammar_was_refused(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = lambda r: httpx.Response(400, json={"error": {"message": "bad grammar"}})
    with pytest.raises(GrammarUnsupported, match="bad grammar") as info:
        await make(client, "llamacpp").complete(chat_request(grammar=PLAN))
    assert info.value.status == 400 and not info.value.retryable
    with pytest.raises(BackendRejected) as plain:  # without a grammar it is a plain rejection
        await make(client, "llamacpp").complete(chat_request())
    assert not isinstance(plain.value, GrammarUnsupported)


def refusal(status: int, param: object, message: str = "refused") -> Handler:
    """A handler answering every completion with an OpenAI-format error naming ``param``."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": status}
    return lambda _: httpx.Response(status, json={"error": error})


def completion_calls(engine: FakeEngine) -> int:
    return sum(p.endswith("completions") for p in engine.paths())


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("dialect", "grammar", "param"),
    [
        ("legato", DIGITS, "structured_outputs"),
        ("legato", PLAN, "structured_outputs.grammar"),
        ("vllm", SCHEMA, "structured_outputs.json"),
        ("vllm", DIGITS, "body.structured_outputs.regex"),  # a FastAPI validation location
        ("sglang", PLAN, "ebnf"),
        ("sglang", SCHEMA, "json_schema"),
        ("llamacpp", PLAN, "grammar"),
        ("openai", SCHEMA, "response_format"),
        ("openai", SCHEMA, "response_format.json_schema.schema"),
        ("openai", SCHEMA, "response_format[json_schema]"),
    ],
)
async def test_an_error_naming_the_grammar_field_means_the_grammar_was_refused(
    client: httpx.AsyncClient, engine: FakeEngine, dialect: str, grammar: dsl.Grammar, param: str
) -> None:
    engine.reply = refusal(400, param, "cannot compile it")
    with pytest.raises(GrammarUnsupported, match="cannot compile it") as info:
        await make(client, dialect).complete(chat_request(grammar=grammar))
    assert info.value.status == 400


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("dialect", "grammar", "status", "param"),
    [
        ("legato", DIGITS, 400, "messages"),  # the prompt is over the context length
        ("legato", PLAN, 400, "max_tokens"),
        ("vllm", SCHEMA, 400, "prompt"),
        ("vllm", DIGITS, 422, "body.temperature"),
        ("vllm", DIGITS, 400, "structured_outputs_x"),  # a prefix, not a sub-field
        ("sglang", DIGITS, 400, "json_schema"),  # another dialect's grammar field
        ("llamacpp", PLAN, 400, "grammar_triggers"),
        ("openai", SCHEMA, 400, "messages[0].content"),
    ],
)
async def test_an_error_naming_another_field_is_a_plain_rejection_sent_once(
    client: httpx.AsyncClient,
    engine: FakeEngine,
    dialect: str,
    grammar: dsl.Grammar,
    status: int,
    param: str,
) -> None:
    engine.reply = refusal(status, param, "too many tokens")
    with pytest.raises(BackendRejected, match="too many tokens") as info:
        await make(client, dialect).complete(chat_request(grammar=grammar))
    assert type(info.value) is BackendRejected
    assert info.value.status == status and not info.value.retryable
    assert completion_calls(engine) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("param", [None, "", 7])
async def test_an_error_naming_no_field_still_means_the_grammar_was_refused(
    client: httpx.AsyncClient, engine: FakeEngine, param: object
) -> None:
    engine.reply = refusal(422, param)
    with pytest.raises(GrammarUnsupported) as info:
        await make(client, "legato").complete(chat_request(grammar=DIGITS))
    assert info.value.status == 422


@pytest.mark.anyio
async def test_a_flat_error_body_naming_another_field_is_a_plain_rejection(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = lambda _: httpx.Response(
        400, json={"object": "error", "message": "too long", "param": "prompt", "code": 400}
    )
    with pytest.raises(BackendRejected, match="too long") as info:
        await make(client, "vllm").complete(chat_request(grammar=DIGITS))
    assert type(info.value) is BackendRejected


@pytest.mark.anyio
async def test_a_stream_refused_for_another_field_is_a_plain_rejection(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = refusal(400, "messages", "prompt too long")
    with pytest.raises(BackendRejected, match="prompt too long") as info:
        async for _ in make(client, "legato").stream(chat_request(grammar=DIGITS)):
            pass
    assert type(info.value) is BackendRejected
    engine.reply = refusal(400, "structured_outputs.regex")
    with pytest.raises(GrammarUnsupported):
        async for _ in make(client, "legato").stream(chat_request(grammar=DIGITS)):
            pass


# -- streaming ---------------------------------------------------------------------------------


def chat_chunk(content: str | None, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m1",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }


USAGE_CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "created": 0,
    "model": "m1",
    "choices": [],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}


@pytest.mark.anyio
async def test_stream_chat_yields_deltas(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.reply = lambda _: sse(
        chat_chunk(""), chat_chunk("Hel"), chat_chunk(None), chat_chunk("lo", "stop"), USAGE_CHUNK
    )
    b = make(client, "sglang")
    pieces = [p async for p in b.stream(chat_request(max_tokens=4))]
    assert pieces == ["Hel", "lo"]
    assert str(engine.last().url) == URL + "/chat/completions"
    assert engine.last_body() == {
        "model": "m1",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
        "priority": -3,
    }


@pytest.mark.anyio
async def test_stream_text_completion(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    def chunk(text: str) -> dict[str, Any]:
        return {
            "id": "c2",
            "object": "text_completion",
            "created": 0,
            "model": "m1",
            "choices": [{"index": 0, "text": text, "finish_reason": None, "logprobs": None}],
        }

    engine.reply = lambda _: sse(
        chunk("a"), chunk("b"), {**USAGE_CHUNK, "object": "text_completion"}
    )
    pieces = [p async for p in make(client, "llamacpp").stream(LLMRequest(prompt="x", hints=HINTS))]
    assert pieces == ["a", "b"]
    assert str(engine.last().url) == URL + "/completions"
    assert engine.last_body() == {
        "model": "m1",
        "prompt": "x",
        "stream": True,
        "stream_options": {"include_usage": True},
        "cache_prompt": True,
    }


@pytest.mark.anyio
async def test_stream_rejection_before_first_chunk(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = lambda _: httpx.Response(400, json={"error": {"message": "bad field x"}})
    with pytest.raises(BackendRejected, match="bad field x"):
        async for _ in make(client).stream(chat_request()):
            pass


class _BrokenStream(httpx.AsyncByteStream):
    """An SSE body that times out after its first event."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield f"data: {json.dumps(chat_chunk('Hel'))}\n\n".encode()
        raise httpx.ReadTimeout("read timed out")


@pytest.mark.anyio
async def test_stream_timeout_midway_is_backend_timeout(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = lambda _: httpx.Response(
        200, stream=_BrokenStream(), headers={"content-type": "text/event-stream"}
    )
    pieces: list[str] = []

    async def consume() -> None:
        async for p in make(client).stream(chat_request()):
            pieces.append(p)

    with pytest.raises(BackendTimeout) as info:
        await consume()
    assert pieces == ["Hel"]
    assert info.value.retryable


@pytest.mark.anyio
async def test_stream_error_event_is_backend_error(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.reply = lambda _: sse(chat_chunk("a"), {"error": {"message": "engine blew up"}})
    with pytest.raises(BackendError, match="engine blew up"):
        async for _ in make(client).stream(chat_request()):
            pass


# -- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owned_by", "dialect"),
    [
        ("legato", "legato"),
        ("vllm", "vllm"),
        ("sglang", "sglang"),
        ("llamacpp", "llamacpp"),
        ("openai", "openai"),
        ("system", "openai"),
        ("", "openai"),
    ],
)
@pytest.mark.anyio
async def test_auto_detects_dialect_from_models_once(
    client: httpx.AsyncClient, engine: FakeEngine, owned_by: str, dialect: str
) -> None:
    engine.owned_by = owned_by
    engine.models = ("served-model", "other")
    b = OpenAICompatible(BASE, http_client=client)
    assert dialect_of(b) == "auto"
    assert b.model is None
    await b.complete(chat_request())
    await b.complete(LLMRequest(prompt="p", hints=HINTS))
    assert dialect_of(b) == dialect
    assert b.model == "served-model"
    assert engine.paths() == ["/v1/models", "/v1/chat/completions", "/v1/completions"]
    assert engine.requests[0].method == "GET"
    assert engine.last_body()["model"] == "served-model"
    assert ("priority" in engine.last_body()) == (dialect == "sglang")
    assert ("x-vllm-priority" in engine.last().headers) == (dialect == "vllm")
    assert await b.resolve() == (dialect, "served-model")
    assert engine.paths().count("/v1/models") == 1


@pytest.mark.anyio
async def test_concurrent_first_calls_probe_once(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.owned_by = "sglang"
    b = OpenAICompatible(BASE, http_client=client)
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(b.complete, chat_request())
    assert engine.paths().count("/v1/models") == 1
    assert engine.paths().count("/v1/chat/completions") == 5


@pytest.mark.anyio
async def test_explicit_dialect_resolves_model_once(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.owned_by = "sglang"  # ignored: the dialect is given
    b = OpenAICompatible(BASE, dialect="vllm", http_client=client)
    assert b.dialect == "vllm"
    await b.complete(chat_request())
    await b.complete(chat_request())
    assert engine.paths() == ["/v1/models", "/v1/chat/completions", "/v1/chat/completions"]
    assert engine.last_body()["model"] == "m1"
    assert b.dialect == "vllm"


@pytest.mark.anyio
async def test_api_key_is_sent_to_models(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    b = OpenAICompatible(BASE, api_key="sk-2", http_client=client)
    assert await b.resolve() == ("vllm", "m1")
    assert engine.requests[0].headers["authorization"] == "Bearer sk-2"


@pytest.mark.anyio
async def test_missing_models_listing_asks_for_model() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "Not Found"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        b = OpenAICompatible(BASE, dialect="openai", http_client=c)
        with pytest.raises(ConfigError, match=r"404.*pass model=") as info:
            await b.complete(chat_request())
        assert isinstance(info.value.__cause__, openai.NotFoundError)
        auto = OpenAICompatible(BASE, http_client=c)
        with pytest.raises(ConfigError, match="pass dialect= and model="):
            await auto.resolve()


@pytest.mark.anyio
async def test_empty_models_listing_asks_for_model(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.models = ()
    b = OpenAICompatible(BASE, dialect="vllm", http_client=client)
    with pytest.raises(ConfigError, match="lists no model; pass model="):
        await b.complete(chat_request())


@pytest.mark.anyio
async def test_failed_probe_is_mapped_and_retried_next_time(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(503, json={"error": {"message": "warming up"}})
        return await engine(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        b = OpenAICompatible(BASE, http_client=c)
        with pytest.raises(BackendError, match="warming up") as info:
            await b.complete(chat_request())
        assert info.value.retryable
        assert info.value.status == 503
        assert dialect_of(b) == "auto"
        await b.complete(chat_request())
        assert dialect_of(b) == "vllm"


# -- error mapping -----------------------------------------------------------------------------


async def _fail_with(handler: Handler, *, name: str | None = None) -> BackendError:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        b = OpenAICompatible(BASE, dialect="vllm", model="m1", http_client=c, name=name)
        with pytest.raises(BackendError) as info:
            await b.complete(chat_request())
        return info.value


@pytest.mark.anyio
async def test_400_is_rejected_with_the_engine_message() -> None:
    err = await _fail_with(
        lambda _: httpx.Response(400, json={"error": {"message": "bad field x"}}), name="gpu-0"
    )
    assert type(err) is BackendRejected
    assert "bad field x" in str(err)
    assert "400" in str(err)
    assert not err.retryable
    assert err.status == 400
    assert err.backend == "gpu-0"
    assert isinstance(err.__cause__, openai.BadRequestError)


@pytest.mark.anyio
async def test_flat_error_body_message_is_used() -> None:
    err = await _fail_with(
        lambda _: httpx.Response(422, json={"object": "error", "message": "too long", "code": 422})
    )
    assert type(err) is BackendRejected
    assert "too long" in str(err)
    assert err.status == 422


@pytest.mark.anyio
async def test_503_is_retryable() -> None:
    err = await _fail_with(lambda _: httpx.Response(503, text="overloaded"))
    assert type(err) is BackendError
    assert err.retryable
    assert err.status == 503
    assert err.retry_after is None
    assert err.backend == URL
    assert isinstance(err.__cause__, openai.InternalServerError)


@pytest.mark.anyio
async def test_429_is_retryable_with_retry_after() -> None:
    err = await _fail_with(
        lambda _: httpx.Response(
            429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "2"}
        )
    )
    assert type(err) is BackendError
    assert err.retryable
    assert err.status == 429
    assert err.retry_after == 2.0
    assert "slow down" in str(err)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0", 0.0),
        ("1.5", 1.5),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # already past: retry now
        ("inf", None),
        ("Infinity", None),
        ("1e400", None),  # overflows to inf
        ("nan", None),
        ("-5", None),
        ("soon", None),
    ],
)
async def test_retry_after_that_is_not_a_finite_wait_is_ignored(
    header: str, expected: float | None
) -> None:
    err = await _fail_with(lambda _: httpx.Response(503, headers={"Retry-After": header}))
    assert err.retryable
    assert err.retry_after == expected


@pytest.mark.anyio
async def test_retry_after_far_future_date_is_finite_for_the_policy_to_cap() -> None:
    err = await _fail_with(
        lambda _: httpx.Response(503, headers={"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"})
    )
    assert err.retry_after is not None
    assert 1e9 < err.retry_after < math.inf


@pytest.mark.anyio
async def test_408_is_retryable() -> None:
    err = await _fail_with(lambda _: httpx.Response(408, json={"error": {"message": "late"}}))
    assert type(err) is BackendError
    assert err.retryable
    assert err.status == 408


@pytest.mark.anyio
async def test_refused_connection_is_retryable_and_names_the_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    err = await _fail_with(handler)
    assert type(err) is BackendError
    assert err.retryable
    assert err.status is None
    assert URL in str(err)
    assert "connection" in str(err).lower()
    assert "refused" in str(err)
    assert isinstance(err.__cause__, openai.APIConnectionError)


@pytest.mark.anyio
async def test_read_timeout_is_backend_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    err = await _fail_with(handler)
    assert type(err) is BackendTimeout
    assert err.retryable
    assert isinstance(err.__cause__, openai.APITimeoutError)


@pytest.mark.anyio
async def test_probe_connection_failure_is_mapped() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as c:
        b = OpenAICompatible(BASE, http_client=c)
        with pytest.raises(
            BackendError, match=r"connection to http://engine\.test:8000/v1"
        ) as info:
            await b.resolve()
        assert info.value.retryable


# -- lifecycle ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_injected_client_is_not_closed(client: httpx.AsyncClient) -> None:
    async with make(client) as b:
        await b.complete(chat_request())
    await b.aclose()
    assert not client.is_closed


@pytest.mark.anyio
async def test_own_client_is_closed() -> None:
    b = OpenAICompatible(BASE, model="m1", dialect="vllm")
    own = b._http
    assert not own.is_closed
    async with b:
        pass
    assert own.is_closed


# -- program release -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_release_goes_to_legato_engines_only(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    await make(client, "vllm").release_program("p1")
    await OpenAICompatible(BASE, http_client=client).release_program("p1")  # nothing sent yet
    assert engine.requests == []
    engine.reply = lambda request: httpx.Response(200, json={"program": "p1", "pins_dropped": 0})
    await make(client, "legato").release_program("p1")
    assert engine.paths() == ["/v1/legato/release"] and engine.last_body() == {"program": "p1"}


@pytest.mark.anyio
async def test_an_engine_without_release_is_asked_once(
    client: httpx.AsyncClient, engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    backend = make(client, "legato")  # an older server: the route answers 404
    with caplog.at_level("WARNING", logger="legato"):
        for program in ("p1", "p2", "p3"):
            await backend.release_program(program)
    assert engine.paths() == ["/v1/legato/release"]
    assert caplog.text.count("has no /legato/release") == 1
