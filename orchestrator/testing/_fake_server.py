"""A fake OpenAI-compatible HTTP server (a hand-written ASGI app and a subprocess runner) that
answers from a script, for tests, demos and benchmarks that must cross a real HTTP boundary.

In-process, without sockets::

    app = fake_openai_app({"capital of France": "Paris"})
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))

Over loopback, in a child process::

    with FakeOpenAIServer({"capital of France": "Paris"}) as server:
        backend = OpenAICompatible(server.url)

From a shell::

    python -m orchestrator.testing._fake_server --port 8000 --script '{"hi": "hello"}'
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias

import anyio
import httpx

from orchestrator._http import serve_asgi
from orchestrator.testing._child import ServerProcess

__all__ = ["ASGIApp", "FakeOpenAIServer", "fake_openai_app"]

_Scope: TypeAlias = MutableMapping[str, Any]
_Message: TypeAlias = MutableMapping[str, Any]
_Receive: TypeAlias = Callable[[], Awaitable[_Message]]
_Send: TypeAlias = Callable[[_Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[_Scope, _Receive, _Send], Awaitable[None]]
"""An ASGI 3 application (what ``uvicorn`` serves and ``httpx.ASGITransport`` calls)."""

_OWNER: Final = "legato-fake"
_ECHO_CHARS: Final = 60
_STARTUP_TIMEOUT: Final = 20.0
_STOP_TIMEOUT: Final = 5.0
# The directory holding the ``orchestrator`` package, so the child can import it even when the
# package is not installed and the caller's working directory is elsewhere.
_ROOT: Final = str(Path(__file__).resolve().parents[2])


class _BadRequest(Exception):
    """A request the fake refuses with HTTP 400; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _error_body(message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _words(text: str) -> int:
    return len(text.split())


def _pieces(text: str) -> list[str]:
    """``text`` split into stream deltas, a word at a time, spaces kept."""
    if not text:
        return []
    words = text.split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


def _content_text(content: object, where: str) -> str:
    """The text of one chat message's ``content``: a string, null, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, str):
                texts.append(part)
        return "".join(texts)
    raise _BadRequest(f"'{where}.content' must be a string or a list of parts", f"{where}.content")


def _chat_prompt(body: Mapping[str, Any]) -> str:
    if "messages" not in body:
        raise _BadRequest("missing required field 'messages'", "messages")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty list of messages", "messages")
    texts = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise _BadRequest(f"'messages[{i}]' must be an object with a 'role'", f"messages[{i}]")
        texts.append(_content_text(m.get("content"), f"messages[{i}]"))
    return "\n".join(texts)


def _completion_prompt(body: Mapping[str, Any]) -> str:
    if "prompt" not in body:
        raise _BadRequest("missing required field 'prompt'", "prompt")
    prompt = body["prompt"]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    raise _BadRequest("'prompt' must be a string or a non-empty list of strings", "prompt")


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, Mapping):
        raise _BadRequest("'stream_options' must be an object", "stream_options")
    return bool(options.get("include_usage"))


def fake_openai_app(
    script: Mapping[str, str] | None = None,
    *,
    default: str | None = None,
    delay: float = 0.0,
    model: str = "legato-fake",
) -> ASGIApp:
    """A raw ASGI app that speaks the OpenAI-compatible API and answers from ``script``.

    Routes:

    - ``GET /health``: ``{"status": "ok"}``.
    - ``GET /v1/models``: one model, ``model``, owned by ``"legato-fake"`` (so
      ``OpenAICompatible(dialect="auto")`` detects the ``openai`` dialect).
    - ``POST /v1/chat/completions`` and ``POST /v1/completions``: whole answers, or Server-Sent
      Events in OpenAI's chunk format with ``"stream": true`` (a final usage chunk when
      ``stream_options.include_usage`` is set, then ``data: [DONE]``).
    - ``GET /debug/last``: the method, path, headers and JSON body of the last completion
      request (so tests can check what crossed the wire); 404 before the first one.

    The reply is the value of the first ``script`` key that is a substring of the prompt (chat:
    the messages' contents joined by newlines), else ``default``, else an echo
    ``"You said: <first 60 characters of the prompt>"``. ``max_tokens`` is not applied; the
    finish reason is always ``"stop"``. ``usage`` counts whitespace-separated words. A body
    that is not JSON, or lacks ``messages``/``prompt``, gets a 400 with an OpenAI-style error
    naming the field; an unknown path a 404.

    Args:
        script: prompt substrings mapped to replies, tried in order.
        default: the reply when no key matches; None to echo the prompt.
        delay: seconds to wait before answering each completion request.
        model: the model id listed and, unless the request names one, reported.

    All state (the last request, the id counter) lives in this app, never in the module.
    """
    table = dict(script or {})
    ids = itertools.count(1)
    last: dict[str, Any] | None = None

    def reply_for(prompt: str) -> str:
        for key, value in table.items():
            if key in prompt:
                return value
        if default is not None:
            return default
        return f"You said: {prompt[:_ECHO_CHARS]}"

    async def send_json(
        send: _Send, status: int, payload: object, extra: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        data = json.dumps(payload).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data, "more_body": False})

    async def read_body(receive: _Receive) -> bytes:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def headers_of(scope: _Scope) -> dict[str, str]:
        out: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            out[name] = f"{out[name]}, {value}" if name in out else value
        return out

    async def completion(scope: _Scope, receive: _Receive, send: _Send, *, chat: bool) -> None:
        nonlocal last
        raw = await read_body(receive)
        body: Any = None
        try:
            body = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            last = {
                "method": scope["method"],
                "path": scope["path"],
                "headers": headers_of(scope),
                "body": None,
            }
            await send_json(
                send,
                400,
                _error_body(f"the request body is not valid JSON: {exc}", "invalid_request_error"),
            )
            return
        last = {
            "method": scope["method"],
            "path": scope["path"],
            "headers": headers_of(scope),
            "body": body,
        }
        try:
            if not isinstance(body, Mapping):
                raise _BadRequest("the request body must be a JSON object")
            prompt = _chat_prompt(body) if chat else _completion_prompt(body)
            stream = body.get("stream", False)
            if not isinstance(stream, bool):
                raise _BadRequest("'stream' must be a boolean", "stream")
            include_usage = _include_usage(body) if stream else False
        except _BadRequest as exc:
            await send_json(send, 400, _error_body(exc.message, "invalid_request_error", exc.param))
            return

        text = reply_for(prompt)
        name = body.get("model")
        answer_model = name if isinstance(name, str) and name else model
        usage = {
            "prompt_tokens": _words(prompt),
            "completion_tokens": _words(text),
            "total_tokens": _words(prompt) + _words(text),
        }
        ident = f"{'chatcmpl' if chat else 'cmpl'}-fake-{next(ids)}"
        created = int(time.time())
        if delay > 0:
            await anyio.sleep(delay)

        if not stream:
            choice: dict[str, Any]
            if chat:
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
            await send_json(
                send,
                200,
                {
                    "id": ident,
                    "object": "chat.completion" if chat else "text_completion",
                    "created": created,
                    "model": answer_model,
                    "choices": [choice],
                    "usage": usage,
                },
            )
            return

        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        for event in _chunks(
            ident, created, answer_model, text, usage, chat=chat, include_usage=include_usage
        ):
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def http(scope: _Scope, receive: _Receive, send: _Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"].rstrip("/") or "/"
        routes: dict[str, str] = {
            "/health": "GET",
            "/v1/models": "GET",
            "/debug/last": "GET",
            "/v1/chat/completions": "POST",
            "/v1/completions": "POST",
        }
        allowed = routes.get(path)
        if allowed is None:
            await send_json(
                send, 404, _error_body(f"no route for {method} {scope['path']}", "not_found_error")
            )
            return
        if method != allowed:
            await send_json(
                send,
                405,
                _error_body(f"{path} takes {allowed}, not {method}", "invalid_request_error"),
                extra=[(b"allow", allowed.encode())],
            )
            return
        match path:
            case "/health":
                await send_json(send, 200, {"status": "ok"})
            case "/v1/models":
                await send_json(
                    send,
                    200,
                    {
                        "object": "list",
                        "data": [
                            {"id": model, "object": "model", "created": 0, "owned_by": _OWNER},
                        ],
                    },
                )
            case "/debug/last":
                if last is None:
                    await send_json(
                        send,
                        404,
                        _error_body("no completion request received yet", "not_found_error"),
                    )
                else:
                    await send_json(send, 200, last)
            case _:
                await completion(scope, receive, send, chat=path == "/v1/chat/completions")

    async def lifespan(receive: _Receive, send: _Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] == "http":
            await http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await lifespan(receive, send)
        else:
            raise RuntimeError(f"the fake OpenAI server speaks HTTP only, not {scope['type']!r}")

    return app


def _chunks(
    ident: str,
    created: int,
    model: str,
    text: str,
    usage: dict[str, int],
    *,
    chat: bool,
    include_usage: bool,
) -> Iterator[bytes]:
    """The SSE events of one streamed answer, in OpenAI's chunk format (without ``[DONE]``)."""
    obj = "chat.completion.chunk" if chat else "text_completion"

    def event(choices: list[dict[str, Any]], final_usage: dict[str, int] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": ident,
            "object": obj,
            "created": created,
            "model": model,
            "choices": choices,
        }
        if include_usage:
            chunk["usage"] = final_usage
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    def choice(piece: str | None, finish: str | None, role: bool = False) -> dict[str, Any]:
        if not chat:
            return {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish}
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if piece is not None:
            delta["content"] = piece
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    if chat:
        yield event([choice("", None, role=True)])
    for piece in _pieces(text):
        yield event([choice(piece, None)])
    yield event([choice(None, "stop")])
    if include_usage:
        yield event([], usage)


class FakeOpenAIServer(ServerProcess):
    """``fake_openai_app`` served by uvicorn on 127.0.0.1 in a child process, as a sync context
    manager.

    ::

        with FakeOpenAIServer({"capital of France": "Paris"}) as server:
            result = orchestrator.run(my_program, backend=server.url)
            assert server.last_request()["headers"]["x-legato-program"].startswith("my_program")

    The child binds a free port itself and reports it; entering waits until ``/health``
    answers (``RuntimeError`` with the child's stderr if it dies or does not answer within
    ``startup_timeout`` seconds). Leaving terminates the child (killing it after 5 s), so no
    process outlives the block. ``start()``/``stop()`` do the same outside a ``with``.

    Args:
        script, default, delay, model: as for ``fake_openai_app``.
        startup_timeout: seconds to wait for the child to serve.
    """

    label = "fake OpenAI server"

    def __init__(
        self,
        script: Mapping[str, str] | None = None,
        *,
        default: str | None = None,
        delay: float = 0.0,
        model: str = "legato-fake",
        startup_timeout: float = 20.0,
    ) -> None:
        self.script = dict(script or {})
        self.default = default
        self.delay = delay
        self.model = model
        super().__init__(startup_timeout=startup_timeout)

    def last_request(self) -> dict[str, Any]:
        """The last completion request the server received: method, path, headers (lowercase
        names) and JSON body (``GET /debug/last``)."""
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            response = client.get(f"{self.base}/debug/last")
            response.raise_for_status()
            data: dict[str, Any] = response.json()
            return data

    def command(self, port: int = 0) -> list[str]:
        """The command line that starts the child on ``port`` (0: a free one)."""
        cmd = [
            sys.executable,
            "-W",
            "ignore::RuntimeWarning:runpy",
            "-m",
            "orchestrator.testing._fake_server",
            "--port",
            str(port),
            "--script",
            json.dumps(self.script),
            "--delay",
            repr(self.delay),
            "--model",
            self.model,
        ]
        if self.default is not None:
            cmd += ["--default", self.default]
        return cmd


def _parse_script(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("--script must be a JSON object mapping strings to strings")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Serve ``fake_openai_app`` on 127.0.0.1 until interrupted; print the port first."""

    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.testing._fake_server",
        description="A fake OpenAI-compatible server that answers from a script.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: free)")
    parser.add_argument(
        "--script",
        default=None,
        help='JSON object: prompt substring -> reply, e.g. \'{"hi": "hello"}\'',
    )
    parser.add_argument("--default", default=None, help="reply when no key matches")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--model", default="legato-fake", help="the model id to list")
    args = parser.parse_args(argv)
    try:
        script = _parse_script(args.script)
    except ValueError as exc:
        parser.error(str(exc))
    if args.delay < 0:
        parser.error("--delay must be >= 0")
    app = fake_openai_app(script, default=args.default, delay=args.delay, model=args.model)

    serve_asgi(app, port=args.port, announce=True, lifespan="off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
