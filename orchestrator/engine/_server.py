"""The embedded engine's OpenAI-compatible HTTP server (``legato engine serve``).

Routes: ``GET /health``, ``GET /metrics`` (Prometheus text), ``GET /v1/models``,
``POST /v1/completions`` and ``POST /v1/chat/completions`` (JSON or SSE streaming, with ``usage``),
and ``POST /v1/legato/release`` with ``{"program": ID}``: that program has ended, so its pins go and
its cached blocks are evicted first (``Engine.release_program``; an ``Orchestrator`` on the
``legato`` dialect sends it when each program ends). Request hints come from the ``X-Legato-*``
headers, vLLM's ``X-Vllm-Priority`` header or a body ``priority`` (all: lower = sooner). A grammar
is read from vLLM's ``structured_outputs`` (``grammar`` in Lark, ``regex``, ``json`` or ``choice``)
and held as a token mask. Legato's own body fields: ``distinct_lines: true`` keeps the output's
lines distinct (``EngineRequest.distinct_lines``); ``require: [...]`` rewinds an output that would
end without one of those strings (``EngineRequest.require``), and ``require_order: true`` asks for
them in their order; ``require_anywhere: [...]`` are more strings, in any order
(``EngineRequest.require_anywhere``); ``alike: [[...], ...]`` are groups of strings written on
consecutive lines that read alike (``EngineRequest.alike``). Bad requests get a 400 naming the
field; an unknown model a 404; another method than the route's a 405. If the engine's step loop
fails, ``/health`` and every request get a 503 naming the error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.abc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from dsl import Grammar, GrammarError, GrammarWarning
from orchestrator.engine._engine import (
    Engine,
    EngineRequest,
    FinishEvent,
    RequestRejected,
    TokenEvent,
)
from orchestrator.engine._sampler import SampleParams

__all__ = ["create_app"]

_Body = TypeVar("_Body", bound=BaseModel)

_log = logging.getLogger("legato")

_MAX_SEED = 2**63 - 1
_MAX_BIAS = 100.0  # OpenAI's range for a logit_bias value: -100..100


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    seed: int | None = Field(default=None, ge=0, le=_MAX_SEED)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    min_tokens: int = Field(default=0, ge=0)
    ignore_eos: bool = False
    priority: int | None = None
    n: int = Field(default=1, ge=1, le=1)
    structured_outputs: dict[str, Any] | None = None
    logit_bias: dict[int, float] | None = None
    distinct_lines: bool = False
    require: list[str] = Field(default_factory=list, max_length=64)
    require_order: bool = False
    require_anywhere: list[str] = Field(default_factory=list, max_length=64)
    alike: list[Annotated[list[str], Field(max_length=64)]] = Field(
        default_factory=list, max_length=16
    )

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        if v == "" or (isinstance(v, list) and "" in v):
            raise ValueError("a stop string must not be empty (it would end every generation)")
        return v

    def stops(self) -> tuple[str, ...]:
        """The stop strings, as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionBody(_Common):
    """``POST /v1/completions``."""

    prompt: str | list[int]
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: Literal[False] = False  # echoing the prompt back is not supported: 400 if asked


class ChatMessage(BaseModel):
    """One chat message."""

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str

    @field_validator("content", mode="before")
    @classmethod
    def _parts(cls, v: Any) -> Any:
        if isinstance(v, list):  # content parts: keep the text ones
            texts = [p.get("text", "") for p in v if isinstance(p, dict)]
            bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
            if bad is not None:
                raise ValueError(f"a content part's text must be a string, got {texts[bad]!r}")
            return "".join(texts)
        return v


class ReleaseBody(BaseModel):
    """``POST /v1/legato/release``: a program has ended."""

    model_config = ConfigDict(extra="forbid")

    program: str = Field(min_length=1)


class ChatBody(_Common):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


def _error(
    status: int, message: str, *, param: str | None = None, kind: str = "invalid_request_error"
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": status}},
        status_code=status,
    )


def _validation_error(exc: ValidationError) -> JSONResponse:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "body"
    return _error(400, f"field {field!r}: {first['msg']}", param=field)


def _int_header(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise _BadRequest(f"header {name} must be an integer, got {value!r}", name) from None


def _seconds_header(request: Request, name: str, label: str) -> float | None:
    """A header holding a number of seconds (``label``: its name as written), or None."""
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise _BadRequest(f"header {label} must be a number of seconds >= 0, got {value!r}", name)
    return seconds


def _demote_header(request: Request) -> tuple[tuple[float, int], ...]:
    """``X-Legato-Demote``: ``seconds:priority`` steps, comma separated, seconds >= 0 and
    increasing (``0.5:1,1.5:2``); () without the header."""
    value = request.headers.get("x-legato-demote")
    if value is None:
        return ()
    steps: list[tuple[float, int]] = []
    for part in value.split(","):
        after_s, sep, to_s = part.strip().partition(":")
        try:
            after, to = float(after_s), int(to_s)
        except ValueError:
            after, to = math.nan, 0
        if not sep or not math.isfinite(after) or after < 0:
            raise _BadRequest(
                f"header X-Legato-Demote: step {part.strip()!r} is not seconds:priority "
                f"with seconds >= 0 (as in 0.5:1,1.5:2)",
                "x-legato-demote",
            )
        if steps and after <= steps[-1][0]:
            raise _BadRequest(
                f"header X-Legato-Demote: step {part.strip()!r} must come later than the "
                f"step before ({steps[-1][0]:g} s)",
                "x-legato-demote",
            )
        steps.append((after, to))
    return tuple(steps)


def _logit_bias(bias: dict[int, float] | None, vocab: int) -> tuple[tuple[int, float], ...]:
    """The ``logit_bias`` field as ``SampleParams.logit_bias``: token ids in ``0..vocab - 1``,
    values finite and within OpenAI's -100..100."""
    for token, value in (bias or {}).items():
        if not 0 <= token < vocab:
            raise _BadRequest(
                f"logit_bias: token id {token} is outside the vocabulary (0..{vocab - 1})",
                "logit_bias",
            )
        if not -_MAX_BIAS <= value <= _MAX_BIAS:  # also refuses NaN
            raise _BadRequest(
                f"logit_bias: the bias of token {token} must be a number from -100 to 100, "
                f"got {value!r}",
                "logit_bias",
            )
    return tuple((bias or {}).items())


def _grammar(so: dict[str, Any] | None) -> Grammar | None:
    """The grammar in vLLM's ``structured_outputs`` field: exactly one of ``grammar`` (Lark
    text or a shipped grammar's name), ``regex``, ``json`` (a schema) or ``choice``."""
    if not so:
        return None
    kinds = {"grammar", "regex", "json", "choice"}
    unknown = sorted(set(so) - kinds)
    if unknown:
        raise _BadRequest(
            f"structured_outputs.{unknown[0]} is not supported by this engine "
            f"(one of: {', '.join(sorted(kinds))})",
            f"structured_outputs.{unknown[0]}",
        )
    if len(so) != 1:
        raise _BadRequest("structured_outputs takes exactly one constraint", "structured_outputs")
    (kind, value), *_ = so.items()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GrammarWarning)  # the client validates afterwards
            if kind == "grammar" and isinstance(value, str):
                if "::=" in value:
                    raise _BadRequest(
                        "structured_outputs.grammar must be Lark; this engine does not read GBNF",
                        "structured_outputs.grammar",
                    )
                return Grammar.lark(value)
            if kind == "regex" and isinstance(value, str):
                return Grammar.regex(value)
            if kind == "json" and isinstance(value, dict | str):
                return Grammar.json_schema(json.loads(value) if isinstance(value, str) else value)
            if kind == "choice" and isinstance(value, list):
                return Grammar.choice(value)
    except (GrammarError, json.JSONDecodeError) as exc:
        field = f"structured_outputs.{kind}"
        raise _BadRequest(f"{field}: {exc}", field) from exc
    want = {"grammar": "a string", "regex": "a string", "json": "a schema", "choice": "a list"}
    raise _BadRequest(
        f"structured_outputs.{kind} must be {want[kind]}", f"structured_outputs.{kind}"
    )


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def create_app(
    engine: Engine,
    model_name: str,
    *,
    aliases: tuple[str, ...] = (),
    grammar_timeout: float = 30.0,
) -> Starlette:
    """The ASGI app serving ``engine`` as ``model_name`` (also answering to ``aliases``).

    The app's lifespan runs the engine's step loop; if the loop fails, the error is logged and
    ``/health`` and every request get a 503 naming it from then on. A grammar that does not
    compile within ``grammar_timeout`` seconds gets a 400 (other requests are served meanwhile).
    """
    names = {model_name, *aliases}
    created = int(time.time())
    assert engine.tokenizer is not None and engine.model is not None, (
        "the HTTP server needs an engine with a model"
    )
    tok = engine.tokenizer
    vocab = engine.model.config.vocab_size
    failed: list[str] = []  # why the engine's step loop ended, once it has failed

    async def serve_engine(
        *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await engine.serve(task_status=task_status)
        except Exception as exc:  # the server stays up to say so: 503s, not hung requests
            failed.append(f"{type(exc).__name__}: {exc}")
            _log.exception("the engine's step loop failed; answering 503 from now on")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            await tg.start(serve_engine)
            yield
            tg.cancel_scope.cancel()

    async def complete_unless_gone(
        request: Request, req: EngineRequest
    ) -> tuple[list[TokenEvent], FinishEvent] | None:
        """``engine.complete(req)``, or None if the client disconnects first: then the request
        is abandoned and the engine aborts its sequence (a client that timed out and retries
        does not leave its first attempt generating to ``max_tokens``). Streams need no such
        watch: the streaming response already ends when its client goes."""
        result: tuple[list[TokenEvent], FinishEvent] | None = None
        error: Exception | None = None
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                nonlocal result, error
                try:
                    result = await engine.complete(req)
                except Exception as exc:  # raised below as it is, not in an exception group
                    error = exc
                tg.cancel_scope.cancel()

            tg.start_soon(run)
            # The body has been read: what the server receives next is the disconnect.
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()
        if error is not None:
            raise error
        return result

    def why_unavailable() -> str:
        return f"the engine has failed: {failed[0]}" if failed else "the engine is shutting down"

    def unavailable() -> Response:
        return _error(503, why_unavailable(), kind="server_error")

    def unavailable_event() -> str:
        """A stream's error event (what OpenAI's clients raise as an API error), as the 503
        of a request not streamed: its headers are sent already."""
        return error_event(503, why_unavailable())

    def error_event(status: int, message: str) -> str:
        error = {"message": message, "type": "server_error", "param": None, "code": status}
        return f"data: {json.dumps({'error': error})}\n\n"

    def failed_here(fin: FinishEvent) -> str:
        """Why the engine failed this request alone (``finish_reason`` ``error``): a 500."""
        return f"the engine failed on this request: {fin.error}"

    async def health(request: Request) -> Response:
        if failed:
            return unavailable()
        return JSONResponse({"status": "ok"})

    async def models(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": model_name, "object": "model", "created": created, "owned_by": "legato"}
                ],
            }
        )

    async def metrics(request: Request) -> Response:
        lines = []
        for key, value in engine.counters.items():
            lines += [
                f"# TYPE legato_engine_{key}_total counter",
                f"legato_engine_{key}_total {value}",
            ]
        gauges = {
            "running": engine.running,
            "waiting": engine.waiting,
            "kv_free_blocks": engine.pool.free_blocks,
            "kv_pinned_blocks": engine.pool.pinned_blocks,
            "kv_total_blocks": engine.pool.num_blocks,
        }
        for key, value in gauges.items():
            lines += [f"# TYPE legato_engine_{key} gauge", f"legato_engine_{key} {value}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def validated(request: Request, body_type: type[_Body]) -> _Body | Response:
        try:
            raw = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the body is not valid JSON")
        if not isinstance(raw, dict):
            return _error(400, "the body must be a JSON object")
        try:
            return body_type.model_validate(raw)
        except ValidationError as exc:
            return _validation_error(exc)

    async def release(request: Request) -> Response:
        body = await validated(request, ReleaseBody)
        if isinstance(body, Response):
            return body
        return JSONResponse(
            {"program": body.program, "pins_dropped": engine.release_program(body.program)}
        )

    async def parse(request: Request, body_type: type[_Common]) -> _Common | Response:
        body = await validated(request, body_type)
        if isinstance(body, Response):
            return body
        if body.model is not None and body.model not in names:
            return _error(
                404,
                f"model {body.model!r} does not exist; this server has {model_name!r}",
                param="model",
                kind="not_found_error",
            )
        return body

    def engine_request(
        request: Request, body: _Common, prompt: list[int], logprobs: int | None, default_max: int
    ) -> EngineRequest:
        priority = _int_header(request, "x-legato-priority")
        if priority is None:
            priority = _int_header(request, "x-vllm-priority")
        if priority is None:
            priority = body.priority or 0
        ttl = _seconds_header(request, "x-legato-kv-ttl", "X-Legato-KV-TTL")
        promote_after = _seconds_header(request, "x-legato-promote-after", "X-Legato-Promote-After")
        promote_to = _int_header(request, "x-legato-promote-to")
        if promote_to is not None and promote_after is None:
            raise _BadRequest(
                "header X-Legato-Promote-To needs X-Legato-Promote-After (when to promote)",
                "x-legato-promote-to",
            )
        program = request.headers.get("x-legato-program")
        if program is not None and not program.strip():
            raise _BadRequest(
                f"header X-Legato-Program must name a program, got {program!r}",
                "x-legato-program",
            )
        if ttl and program is None:
            raise _BadRequest(
                "header X-Legato-KV-TTL needs X-Legato-Program (whose KV cache to keep)",
                "x-legato-kv-ttl",
            )
        max_tokens = body.max_tokens
        if isinstance(body, ChatBody) and body.max_completion_tokens is not None:
            max_tokens = body.max_completion_tokens
        params = SampleParams(
            max_tokens=max_tokens or default_max,
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            seed=body.seed,
            stop=body.stops(),
            min_tokens=body.min_tokens,
            ignore_eos=body.ignore_eos,
            logprobs=logprobs,
            logit_bias=_logit_bias(body.logit_bias, vocab),
        )
        return EngineRequest(
            prompt=prompt,
            params=params,
            priority=priority,
            program=program,
            thread=request.headers.get("x-legato-thread"),
            kv_ttl=ttl,
            promote_after=promote_after,
            promote_to=promote_to or 0,
            demote=_demote_header(request),
            distinct_lines=body.distinct_lines,
            require=tuple(body.require),
            require_order=body.require_order,
            require_anywhere=tuple(body.require_anywhere),
            alike=tuple(tuple(group) for group in body.alike),
        )

    async def run(
        request: Request, body: _Common, req: EngineRequest, *, chat: bool, include_usage: bool
    ) -> Response:
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        obj = "chat.completion" if chat else "text_completion"
        model = body.model or model_name

        def usage(fin: FinishEvent) -> dict[str, Any]:
            return {
                "prompt_tokens": fin.prompt_tokens,
                "completion_tokens": fin.completion_tokens,
                "total_tokens": fin.prompt_tokens + fin.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": fin.cached_tokens},
            }

        def lp_entry(ev: TokenEvent) -> dict[str, Any]:
            return {
                "token": ev.text,
                "logprob": ev.logprob,
                "top_logprobs": [{"token": tok.decode([t]), "logprob": p} for t, p in ev.top],
            }

        def choice(
            text: str, finish: str | None, lps: list[TokenEvent] | None, delta: bool
        ) -> dict[str, Any]:
            if chat:
                c: dict[str, Any] = {"index": 0, "finish_reason": finish}
                if delta:
                    c["delta"] = {"content": text} if text or finish is None else {}
                else:
                    c["message"] = {"role": "assistant", "content": text}
                if lps is not None:
                    c["logprobs"] = {"content": [lp_entry(e) for e in lps]}
                return c
            c = {"index": 0, "text": text, "finish_reason": finish}
            if lps is not None:
                c["logprobs"] = {
                    "tokens": [e.text for e in lps],
                    "token_logprobs": [e.logprob for e in lps],
                    "top_logprobs": [{tok.decode([t]): p for t, p in e.top} for e in lps],
                }
            return c

        want_lp = req.params.logprobs is not None
        if failed:
            return unavailable()
        if not body.stream:
            done = await complete_unless_gone(request, req)
            if done is None:  # the client hung up: its sequence is aborted, nobody reads this
                return Response(status_code=499)
            events, fin = done
            if fin.reason == "abort":  # the engine stopped first: not an OpenAI finish_reason
                return unavailable()
            if fin.reason == "error":
                return _error(500, failed_here(fin), kind="server_error")
            return JSONResponse(
                {
                    "id": rid,
                    "object": obj,
                    "created": int(time.time()),
                    "model": model,
                    "choices": [choice(fin.text, fin.reason, events if want_lp else None, False)],
                    "usage": usage(fin),
                }
            )

        chunk_obj = "chat.completion.chunk" if chat else "text_completion"

        def sse(payload: Mapping[str, Any]) -> str:
            return f"data: {json.dumps(payload)}\n\n"

        def chunk(c: dict[str, Any]) -> str:
            return sse(
                {
                    "id": rid,
                    "object": chunk_obj,
                    "created": int(time.time()),
                    "model": model,
                    "choices": [c],
                }
            )

        async def gen() -> AsyncIterator[str]:
            if failed:  # since ``run`` looked: the request would wait for a step loop forever
                yield unavailable_event()
                yield "data: [DONE]\n\n"
                return
            async with engine.open(req) as events:
                if chat:
                    yield chunk(
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                        }
                    )
                async for ev in events:
                    if isinstance(ev, TokenEvent):
                        if ev.text or want_lp:
                            yield chunk(choice(ev.text, None, [ev] if want_lp else None, True))
                        continue
                    if ev.reason == "abort":  # the engine stopped first: no finish_reason
                        yield unavailable_event()
                        break
                    if ev.reason == "error":
                        yield error_event(500, failed_here(ev))
                        break
                    if ev.tail:
                        yield chunk(choice(ev.tail, None, None, True))
                    yield chunk(choice("", ev.reason, None, True))
                    if include_usage:
                        yield sse(
                            {
                                "id": rid,
                                "object": chunk_obj,
                                "created": int(time.time()),
                                "model": model,
                                "choices": [],
                                "usage": usage(ev),
                            }
                        )
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    def endpoint(chat: bool) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            parsed = await parse(request, ChatBody if chat else CompletionBody)
            if isinstance(parsed, Response):
                return parsed
            grammar: Grammar | None = None
            try:
                if isinstance(parsed, ChatBody):
                    prompt = tok.encode(tok.render_chat(parsed.messages))
                    logprobs = parsed.top_logprobs or (1 if parsed.logprobs else None)
                else:
                    assert isinstance(parsed, CompletionBody)
                    p = parsed.prompt
                    prompt = tok.encode(p) if isinstance(p, str) else list(p)
                    logprobs = parsed.logprobs
                req = engine_request(request, parsed, prompt, logprobs, 16 if not chat else 256)
                engine.check(req)
                grammar = _grammar(parsed.structured_outputs)
                if grammar is not None:
                    matcher = await engine.matcher(grammar, time_limit=grammar_timeout)
                    req = dataclasses.replace(req, constraint=matcher)
            except _BadRequest as exc:
                return _error(400, str(exc), param=exc.param)
            except RequestRejected as exc:
                param = exc.field or ("structured_outputs" if grammar else None)
                return _error(400, str(exc), param=param or ("messages" if chat else "prompt"))
            include_usage = bool((parsed.stream_options or {}).get("include_usage"))
            return await run(request, parsed, req, chat=chat, include_usage=include_usage)

        return handle

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, f"no route {request.url.path}", kind="not_found_error")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        response = _error(405, f"{request.method} is not allowed on {request.url.path}")
        if isinstance(exc, HTTPException) and exc.headers:
            response.headers.update(exc.headers)  # Allow: the methods that are
        return response

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/metrics", metrics),
            Route("/v1/models", models),
            Route("/v1/completions", endpoint(False), methods=["POST"]),
            Route("/v1/chat/completions", endpoint(True), methods=["POST"]),
            Route("/v1/legato/release", release, methods=["POST"]),
        ],
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_allowed},
    )
