"""Tests of the fake OpenAI-compatible server: the ASGI app in-process, then the child process
over loopback through the openai SDK and Legato's own backend."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest

import dsl
from orchestrator import Orchestrator
from orchestrator.backends import OpenAICompatible
from orchestrator.testing import EngineServer, FakeOpenAIServer, fake_openai_app

SCRIPT = {"capital of France": "Paris", "capital": "somewhere"}


# -- the ASGI app, in-process ---------------------------------------------------------------


@pytest.fixture
async def app_client() -> AsyncIterator[httpx.AsyncClient]:
    app = fake_openai_app(SCRIPT, model="fake-1")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fake.test"
    ) as client:
        yield client


@pytest.mark.anyio
async def test_app_health_and_models(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/health")).json() == {"status": "ok"}
    models = (await app_client.get("/v1/models")).json()
    assert models["object"] == "list"
    assert models["data"][0] == {
        "id": "fake-1",
        "object": "model",
        "created": 0,
        "owned_by": "legato-fake",
    }


@pytest.mark.anyio
async def test_app_chat_first_matching_key_wins(app_client: httpx.AsyncClient) -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "What is the capital of France?"},
        ]
    }
    reply = (await app_client.post("/v1/chat/completions", json=body)).json()
    assert reply["object"] == "chat.completion"
    assert reply["model"] == "fake-1"
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "Paris"}
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"] == {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}


@pytest.mark.anyio
async def test_app_key_may_span_messages(app_client: httpx.AsyncClient) -> None:
    # Chat prompts are the contents joined by newlines, as ScriptedBackend sees them.
    body = {"messages": [{"role": "user", "content": "capital"}, {"role": "user", "content": "x"}]}
    reply = (await app_client.post("/v1/chat/completions", json=body)).json()
    assert reply["choices"][0]["message"]["content"] == "somewhere"


@pytest.mark.anyio
async def test_app_default_and_echo() -> None:
    long_prompt = "word " * 30
    with_default = fake_openai_app({}, default="fallback")
    echo = fake_openai_app()
    for app, expected in ((with_default, "fallback"), (echo, f"You said: {long_prompt[:60]}")):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://fake.test"
        ) as client:
            reply = (
                await client.post("/v1/completions", json={"model": "m", "prompt": long_prompt})
            ).json()
            assert reply["object"] == "text_completion"
            assert reply["model"] == "m"
            assert reply["choices"][0]["text"] == expected
            assert reply["usage"]["prompt_tokens"] == 30


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "content", "param"),
    [
        ("/v1/chat/completions", b"{not json", None),
        ("/v1/chat/completions", b"[1, 2]", None),
        ("/v1/chat/completions", b'{"model": "m"}', "messages"),
        ("/v1/chat/completions", b'{"messages": "hi"}', "messages"),
        ("/v1/completions", b'{"model": "m"}', "prompt"),
        ("/v1/completions", b'{"prompt": 3}', "prompt"),
    ],
)
async def test_app_rejects_bad_bodies(
    app_client: httpx.AsyncClient, path: str, content: bytes, param: str | None
) -> None:
    response = await app_client.post(path, content=content)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if param is not None:
        assert f"'{param}'" in error["message"]


@pytest.mark.anyio
async def test_app_unknown_path_and_wrong_method(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/v1/nothing")).status_code == 404
    wrong = await app_client.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"


@pytest.mark.anyio
async def test_app_debug_last_records_the_wire(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/debug/last")).status_code == 404
    body = {"messages": [{"role": "user", "content": "hi"}], "priority": -3}
    await app_client.post("/v1/chat/completions", json=body, headers={"X-Legato-Program": "p-1"})
    await app_client.get("/health")  # not a completion request: not recorded
    last = (await app_client.get("/debug/last")).json()
    assert last["method"] == "POST"
    assert last["path"] == "/v1/chat/completions"
    assert last["headers"]["x-legato-program"] == "p-1"
    assert last["body"] == body


@pytest.mark.anyio
async def test_app_state_is_per_app() -> None:
    first, second = fake_openai_app(), fake_openai_app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=first), base_url="http://fake.test"
    ) as client:
        await client.post("/v1/completions", json={"prompt": "x"})
        assert (await client.get("/debug/last")).status_code == 200
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=second), base_url="http://fake.test"
    ) as client:
        assert (await client.get("/debug/last")).status_code == 404


@pytest.mark.anyio
async def test_app_streams_chat_chunks_in_openai_format(app_client: httpx.AsyncClient) -> None:
    body = {
        "messages": [{"role": "user", "content": "capital of France, please"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = await app_client.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e.removeprefix("data: ") for e in response.text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Paris"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 1


# -- the child process, over loopback -------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(SCRIPT, default="no idea") as srv:
        yield srv


def sdk(url: str, http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url, api_key="x", http_client=http, max_retries=0)


@pytest.mark.http
def test_server_urls(server: FakeOpenAIServer) -> None:
    assert server.base == f"http://127.0.0.1:{server.port}"
    assert server.url == server.base + "/v1"
    assert httpx.get(server.base + "/health", trust_env=False).json() == {"status": "ok"}


@pytest.mark.http
@pytest.mark.anyio
async def test_sdk_chat_and_completions(server: FakeOpenAIServer) -> None:
    async with httpx.AsyncClient() as http, sdk(server.url, http) as client:
        models = await client.models.list()
        assert [m.id for m in models.data] == ["legato-fake"]
        chat = await client.chat.completions.create(
            model="legato-fake",
            messages=[{"role": "user", "content": "The capital of France?"}],
            max_tokens=16,
        )
        assert chat.choices[0].message.content == "Paris"
        assert chat.usage is not None
        assert chat.usage.prompt_tokens == 4
        comp = await client.completions.create(model="legato-fake", prompt="what now")
        assert comp.choices[0].text == "no idea"
        assert comp.choices[0].finish_reason == "stop"


@pytest.mark.http
@pytest.mark.anyio
async def test_sdk_streaming(server: FakeOpenAIServer) -> None:
    async with httpx.AsyncClient() as http, sdk(server.url, http) as client:
        chat = await client.chat.completions.create(
            model="legato-fake",
            messages=[{"role": "user", "content": "no key here"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces: list[str] = []
        usage: Any = None
        async with chat:
            async for chunk in chat:
                pieces.extend(c.delta.content for c in chunk.choices if c.delta.content)
                usage = chunk.usage or usage
        assert pieces == ["no ", "idea"]
        assert usage is not None
        assert usage.completion_tokens == 2

        comp = await client.completions.create(
            model="legato-fake", prompt="capital of France", stream=True
        )
        async with comp:
            texts = [c.choices[0].text async for c in comp if c.choices]
        assert "".join(texts) == "Paris"


@pytest.mark.http
@pytest.mark.anyio
async def test_sdk_sees_400_on_a_bad_body(server: FakeOpenAIServer) -> None:
    async with httpx.AsyncClient() as http, sdk(server.url, http) as client:
        with pytest.raises(openai.BadRequestError, match="'prompt'") as info:
            await client.post("/completions", cast_to=object, body={"model": "m"})
        assert info.value.status_code == 400
    async with httpx.AsyncClient() as http:
        response = await http.post(server.url + "/chat/completions", content=b"{oops")
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.http
@pytest.mark.anyio
async def test_legato_headers_cross_the_wire(server: FakeOpenAIServer) -> None:
    @dsl.program
    async def ask() -> str:
        return await dsl.gen("capital of France?", max_tokens=8)

    async with httpx.AsyncClient() as http:
        backend = OpenAICompatible(server.url, http_client=http)
        async with Orchestrator(backend) as orch:
            handle = await orch.submit(ask)
            assert await handle.result() == "Paris"
        assert backend.dialect == "openai"
        assert backend.model == "legato-fake"
    last = server.last_request()
    assert last["headers"]["x-legato-program"] == handle.id
    assert last["body"]["messages"] == [{"role": "user", "content": "capital of France?"}]


@pytest.mark.http
def test_process_is_gone_after_exit() -> None:
    with FakeOpenAIServer(delay=0.01) as srv:
        proc = srv.process
        assert proc is not None
        assert proc.poll() is None
    assert proc.returncode is not None
    if sys.platform != "win32":
        with pytest.raises(ProcessLookupError):
            os.kill(proc.pid, 0)
    with pytest.raises(RuntimeError, match="the FakeOpenAIServer is not running"):
        _ = srv.url


def test_a_server_not_started_names_its_own_kind() -> None:
    with pytest.raises(RuntimeError, match="the EngineServer is not running"):
        _ = EngineServer().port


@pytest.mark.http
def test_a_child_that_dies_reports_its_stderr() -> None:
    srv = FakeOpenAIServer(delay=-1.0)
    with pytest.raises(RuntimeError, match=r"--delay must be >= 0"):
        srv.start()
    proc = srv.process
    assert proc is not None
    assert proc.returncode is not None
