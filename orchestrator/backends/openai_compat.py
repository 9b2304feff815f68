"""The backend speaking the OpenAI-compatible API to vLLM, SGLang, llama-server or OpenAI."""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self, assert_never, get_args

import anyio
import httpx
import openai
from openai import Omit, omit
from openai.types.chat import ChatCompletionMessageParam

from dsl import Grammar
from orchestrator import constrain
from orchestrator.backends._base import Completion, Hints, LLMRequest, Message
from orchestrator.errors import (
    BackendError,
    BackendRejected,
    BackendTimeout,
    ConfigError,
    GrammarUnsupported,
)

__all__ = ["Dialect", "OpenAICompatible"]

Dialect = Literal["legato", "vllm", "sglang", "llamacpp", "openai"]
"""An engine family whose request extensions (priority, constraints) the backend speaks."""

_DialectSetting = Literal["auto", "legato", "vllm", "sglang", "llamacpp", "openai"]
_DIALECTS: Final[frozenset[str]] = frozenset(get_args(_DialectSetting))
RELEASE_TIMEOUT: Final = 5.0
"""Seconds ``OpenAICompatible.release_program`` waits for the engine."""
_log = logging.getLogger("legato")

# What each engine says in ``/v1/models`` ``data[].owned_by``.
_OWNERS: Final[Mapping[str, Dialect]] = {
    "legato": "legato",
    "vllm": "vllm",
    "sglang": "sglang",
    "llamacpp": "llamacpp",
}


class OpenAICompatible:
    """A backend for any server with the OpenAI-compatible completions API.

    Requests carry Legato's ``X-Legato-*`` headers and, per ``dialect``, the engine's own
    priority field (in the engine's direction) and its form of a choice constraint:

    - ``legato`` (``legato engine serve``): the ``X-Legato-*`` headers only,
      ``structured_outputs.choice``;
    - ``vllm``: header ``X-Vllm-Priority`` (lower = sooner), ``structured_outputs.choice``;
    - ``sglang``: body ``priority`` (negated: higher = sooner), ``regex``;
    - ``llamacpp``: body ``cache_prompt: true``, GBNF ``grammar``; no priority;
    - ``openai``: nothing beyond the standard fields (the runtime checks choices afterwards).

    With ``dialect="auto"`` the engine is recognised from ``GET /models`` (``owned_by``) on
    first use. Without ``model`` the first model the server lists is used. The backend never
    retries: failures are raised as ``BackendError`` subclasses for the runtime to act on.

    Args:
        base_url: the server, as ``http://host:port`` (``/v1`` is appended) or ``.../v1``.
        api_key: bearer token, if the server needs one.
        model: the model id to request; None to use the server's first listed model.
        dialect: the engine family, or ``"auto"`` to detect it.
        http_client: an ``httpx.AsyncClient`` to send through (not closed by ``aclose``);
            None to create one.
        timeout: seconds to wait for a request.
        name: the backend's name in errors and logs; defaults to the base URL.
    """

    name: str

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        dialect: _DialectSetting = "auto",
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 600.0,
        name: str | None = None,
    ) -> None:
        if dialect not in _DIALECTS:
            raise ConfigError(
                f"unknown dialect {dialect!r}; expected one of {', '.join(sorted(_DIALECTS))}"
            )
        self.base_url = _normalise_base_url(base_url)
        self.name = name if name is not None else self.base_url
        self._dialect: Dialect | None = None if dialect == "auto" else dialect
        self._model = model
        self._owns_client = http_client is None
        self._http = (
            http_client
            if http_client is not None
            else httpx.AsyncClient(
                timeout=httpx.Timeout(timeout),
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
                follow_redirects=True,
            )
        )
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or "EMPTY",
            http_client=self._http,
            max_retries=0,
            timeout=timeout,
        )
        self._probe_lock = anyio.Lock()
        self._no_release = False  # the engine answered 404 to a release
        self._is_openai_api = httpx.URL(self.base_url).host.endswith("openai.com")

    def __repr__(self) -> str:
        return f"OpenAICompatible({self.base_url!r}, dialect={self.dialect!r}, name={self.name!r})"

    @property
    def dialect(self) -> _DialectSetting:
        """The engine family in use: the given one, the detected one, or ``"auto"`` before
        detection."""
        return self._dialect if self._dialect is not None else "auto"

    @property
    def model(self) -> str | None:
        """The model id requested by default: the given or resolved one, None before
        resolution."""
        return self._model

    async def resolve(self) -> tuple[Dialect, str]:
        """Detect the dialect and the model id (from ``GET /models``) where they were not given.

        Probes the server at most once while it succeeds; the results are cached.

        Returns:
            ``(dialect, model)``.

        Raises:
            ConfigError: the server cannot tell (no ``/models`` listing, or no model in it).
            BackendError: the server could not be reached or failed.
        """
        dialect, model = await self._ensure(need_model=True)
        assert model is not None
        return dialect, model

    async def complete(self, request: LLMRequest) -> Completion:
        """Send ``request`` and return the whole completion.

        Chat completions when ``request.messages`` is set, text completions otherwise.

        Raises:
            BackendRejected: the engine refused the request (4xx other than 408/429).
            BackendTimeout: no answer within the timeout.
            BackendError: retryable failures (429, 408, 5xx, connection failed).
        """
        call = await self._prepare(request)
        try:
            if call.messages is not None:
                chat = await self._client.chat.completions.create(
                    messages=call.messages,
                    max_completion_tokens=call.max_completion_tokens,
                    **call.common(),
                )
                if not chat.choices:
                    raise self._no_choices()
                text = chat.choices[0].message.content or ""
                finish: str | None = chat.choices[0].finish_reason
                usage = chat.usage
            else:
                assert request.prompt is not None
                comp = await self._client.completions.create(prompt=request.prompt, **call.common())
                if not comp.choices:
                    raise self._no_choices()
                text = comp.choices[0].text
                finish = comp.choices[0].finish_reason
                usage = comp.usage
        except (openai.APIError, httpx.HTTPError) as exc:
            raise _map_error(
                exc, name=self.name, url=self.base_url, request=request, call=call
            ) from exc
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage is not None else 0,
            completion_tokens=usage.completion_tokens if usage is not None else 0,
            finish_reason=finish,
            cached_tokens=_cached_tokens(usage),
        )

    async def stream(self, request: LLMRequest) -> AsyncIterator[str]:
        """Send ``request`` and yield the completion's text deltas as they arrive.

        Raises the same errors as ``complete``, before or while streaming.
        """
        call = await self._prepare(request)
        include_usage: Any = {"include_usage": True}
        try:
            if call.messages is not None:
                chat = await self._client.chat.completions.create(
                    messages=call.messages,
                    max_completion_tokens=call.max_completion_tokens,
                    stream=True,
                    stream_options=include_usage,
                    **call.common(),
                )
                async with chat:
                    async for chunk in chat:
                        for choice in chunk.choices:
                            if choice.delta.content:
                                yield choice.delta.content
            else:
                assert request.prompt is not None
                comp = await self._client.completions.create(
                    prompt=request.prompt,
                    stream=True,
                    stream_options=include_usage,
                    **call.common(),
                )
                async with comp:
                    async for piece in comp:
                        for text_choice in piece.choices:
                            if text_choice.text:
                                yield text_choice.text
        except (openai.APIError, httpx.HTTPError) as exc:
            raise _map_error(
                exc, name=self.name, url=self.base_url, request=request, call=call
            ) from exc

    async def release_program(self, program: str) -> None:
        """``program`` has ended. A ``legato`` engine is told (``POST /v1/legato/release``):
        it drops the program's KV pins and evicts its cached blocks first. Other engines have
        no such call; their pins, where they keep any, expire. Best effort: the program is
        over, so a failure is logged (logger ``legato``), not raised, and the call gives up
        after ``RELEASE_TIMEOUT`` seconds. A server without the route (404: an older one) is
        not asked again."""
        if self._dialect != "legato" or self._no_release:  # also before any request
            return
        try:
            await self._client.post(
                "/legato/release",
                body={"program": program},
                cast_to=object,
                options={"timeout": RELEASE_TIMEOUT},
            )
        except openai.NotFoundError:
            self._no_release = True
            _log.warning(
                "%s: the engine has no /legato/release; program ends are not sent to it",
                self.name,
            )
        except (openai.APIError, httpx.HTTPError) as exc:
            _log.warning("%s: could not release program %r: %s", self.name, program, exc)

    async def aclose(self) -> None:
        """Close the HTTP client if this backend created it; an injected one is left open."""
        if self._owns_client:
            with anyio.CancelScope(shield=True):  # close even while being cancelled
                await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- internals ---------------------------------------------------------------------------

    def _no_choices(self) -> BackendError:
        return BackendError(
            f"{self.name}: the engine answered with no choices", backend=self.name, retryable=False
        )

    async def _prepare(self, request: LLMRequest) -> _Call:
        dialect, model = await self._ensure(need_model=request.model is None)
        model = request.model or model
        assert model is not None
        headers, body = _dialect_extras(
            dialect,
            request.hints,
            None,
            self.name,
            distinct_lines=request.distinct_lines,
            require=request.require,
            require_order=request.require_order,
            require_anywhere=request.require_anywhere,
            alike=request.alike,
        )
        grammar_body = (
            _grammar_body(dialect, request.grammar, self.name)
            if request.grammar is not None
            else {}
        )
        body.update(grammar_body)
        max_tokens: int | Omit = omit
        max_completion_tokens: int | Omit = omit
        if request.max_tokens is not None:
            # OpenAI's own chat API deprecated max_tokens (its reasoning models reject it);
            # every other server, including unrecognised ones that fall back to the "openai"
            # dialect, reads max_tokens.
            if self._is_openai_api and request.messages is not None:
                max_completion_tokens = request.max_tokens
            else:
                max_tokens = request.max_tokens
        return _Call(
            model=model,
            messages=(
                [_message_param(m) for m in request.messages]
                if request.messages is not None
                else None
            ),
            max_tokens=max_tokens,
            max_completion_tokens=max_completion_tokens,
            temperature=request.temperature if request.temperature is not None else omit,
            top_p=request.top_p if request.top_p is not None else omit,
            stop=list(request.stop) if request.stop else omit,
            seed=request.seed if request.seed is not None else omit,
            headers=headers,
            body=body or None,
            grammar_fields=tuple(grammar_body),
        )

    async def _ensure(self, *, need_model: bool) -> tuple[Dialect, str | None]:
        """The dialect and default model, probing ``/models`` once for what is missing."""
        if self._dialect is None or (need_model and self._model is None):
            async with self._probe_lock:
                if self._dialect is None or (need_model and self._model is None):
                    await self._probe(need_model=need_model)
        assert self._dialect is not None
        return self._dialect, self._model

    async def _probe(self, *, need_model: bool) -> None:
        missing = []
        if self._dialect is None:
            missing.append("dialect=")
        if self._model is None:
            missing.append("model=")
        advice = "pass " + " and ".join(missing)
        url = f"{self.base_url}/models"
        try:
            listing = await self._client.get("/models", cast_to=object)
        except openai.APIStatusError as exc:
            if _is_rejection(exc.status_code):
                raise ConfigError(
                    f"{self.name}: GET {url} answered {exc.status_code} "
                    f"({_engine_message(exc)}); {advice}"
                ) from exc
            raise _map_error(exc, name=self.name, url=self.base_url, request=None) from exc
        except (openai.APIError, httpx.HTTPError) as exc:
            raise _map_error(exc, name=self.name, url=self.base_url, request=None) from exc

        data = listing.get("data") if isinstance(listing, dict) else None
        first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
        if self._dialect is None:
            owner = first.get("owned_by")
            self._dialect = (
                _OWNERS.get(owner.lower(), "openai") if isinstance(owner, str) else ("openai")
            )
        if self._model is None:
            model_id = first.get("id")
            if isinstance(model_id, str) and model_id:
                self._model = model_id
            elif need_model:
                raise ConfigError(f"{self.name}: GET {url} lists no model; pass model=")


@dataclass(frozen=True, slots=True)
class _Call:
    """The resolved arguments of one SDK call (``omit`` where a field is not sent)."""

    model: str
    messages: list[ChatCompletionMessageParam] | None
    max_tokens: int | Omit
    max_completion_tokens: int | Omit
    temperature: float | Omit
    top_p: float | Omit
    stop: list[str] | Omit
    seed: int | Omit
    headers: dict[str, str]
    body: dict[str, object] | None
    grammar_fields: tuple[str, ...]
    """The body fields that carry the request's grammar (none without one)."""

    def common(self) -> dict[str, Any]:
        """The SDK arguments shared by the chat and text completion calls."""
        return {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "seed": self.seed,
            "extra_headers": self.headers,
            "extra_body": self.body,
        }


def _cached_tokens(usage: object) -> int:
    """``usage.prompt_tokens_details.cached_tokens`` where the engine reports it, else 0."""
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None)
    return cached if isinstance(cached, int) else 0


def _normalise_base_url(base_url: str) -> str:
    try:
        url = httpx.URL(base_url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError(f"invalid backend URL {base_url!r}: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"invalid backend URL {base_url!r}: expected http(s)://host[:port][/v1]")
    path = url.path.rstrip("/")
    if not path:
        path = "/v1"
    return str(url.copy_with(path=path, query=None, fragment=None))


def _message_param(m: Message) -> ChatCompletionMessageParam:
    match m.role:
        case "system":
            return {"role": "system", "content": m.content}
        case "user":
            return {"role": "user", "content": m.content}
        case "assistant":
            return {"role": "assistant", "content": m.content}
        case _:
            assert_never(m.role)


def _dialect_extras(
    dialect: Dialect,
    hints: Hints,
    grammar: Grammar | None,
    name: str,
    *,
    distinct_lines: bool = False,
    require: tuple[str, ...] = (),
    require_order: bool = False,
    require_anywhere: tuple[str, ...] = (),
    alike: tuple[tuple[str, ...], ...] = (),
) -> tuple[dict[str, str], dict[str, object]]:
    """The headers and extra body fields ``dialect`` needs for ``hints``, ``grammar``,
    ``distinct_lines``, ``require``, ``require_order``, ``require_anywhere`` and ``alike`` (the
    last five read by the embedded engine's server alone)."""
    headers = hints.headers()
    body: dict[str, object] = {}
    match dialect:
        case "legato":  # the embedded engine's server reads the X-Legato-* headers
            if distinct_lines:
                body["distinct_lines"] = True
            if require:
                body["require"] = list(require)
            if require_order:
                body["require_order"] = True
            if require_anywhere:
                body["require_anywhere"] = list(require_anywhere)
            if alike:
                body["alike"] = [list(group) for group in alike]
        case "vllm":
            headers["X-Vllm-Priority"] = str(hints.priority)
        case "sglang":
            body["priority"] = -hints.priority
        case "llamacpp":
            body["cache_prompt"] = True
        case "openai":
            pass
        case _:
            assert_never(dialect)
    if grammar is not None:
        body.update(_grammar_body(dialect, grammar, name))
    return headers, body


def _grammar_body(dialect: Dialect, grammar: Grammar, name: str) -> dict[str, object]:
    """The body fields that carry ``grammar`` to a ``dialect`` engine, or
    ``GrammarUnsupported``."""
    try:
        return constrain.emit(dialect, grammar)
    except (constrain.Unsupported, constrain.GbnfError) as exc:
        raise GrammarUnsupported(
            f"{name}: cannot send {grammar.describe()} to a {dialect} engine: {exc}",
            backend=name,
        ) from exc


def _is_rejection(status: int) -> bool:
    return 400 <= status < 500 and status not in (408, 429)


def _engine_message(exc: openai.APIError) -> str:
    """The engine's own error message from an error response body."""
    body = exc.body
    if isinstance(body, Mapping):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if value is not None and key == "detail":
                return str(value)
        return str(dict(body))
    if isinstance(body, str) and body:
        return body
    return exc.message


def _retry_after(response: httpx.Response) -> float | None:
    """The seconds the ``Retry-After`` header asks for (0 for a date already past); None
    without one, or for one that is malformed, negative or not finite (``inf``, ``nan``). A
    far-off date is returned as it is: the retry policy caps the wait."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError, OverflowError, OSError):
            return None
    return seconds if 0 <= seconds < math.inf else None  # NaN fails both


def _concerns(param: str, fields: tuple[str, ...]) -> bool:
    """Whether an error's ``param`` names one of the body ``fields`` or a part of one:
    ``structured_outputs``, ``structured_outputs.grammar``, ``response_format[json_schema]``;
    a leading ``body.`` (a FastAPI validation location) is skipped."""
    param = param.removeprefix("body.")
    return any(param == f or param.startswith((f + ".", f + "[")) for f in fields)


def _map_error(
    exc: openai.APIError | httpx.HTTPError,
    *,
    name: str,
    url: str,
    request: LLMRequest | None,
    call: _Call | None = None,
) -> BackendError:
    """The ``BackendError`` for an SDK or transport failure (the caller chains ``exc``).

    A constrained request refused with 400 or 422 is taken as the engine refusing its grammar
    field (``GrammarUnsupported``, which the runtime answers by resending without the grammar
    and validating) when the error's ``param`` names that field (``call.grammar_fields``) or a
    part of it, or when the error names no ``param`` at all (llama-server's errors have
    none). An error whose ``param`` names another field (the prompt too long, a bad
    ``max_tokens``) is a plain ``BackendRejected``."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = f"{name}: HTTP {status}: {_engine_message(exc)}"
        if request is not None and request.grammar is not None and status in (400, 422):
            param = exc.param if isinstance(exc.param, str) and exc.param else None
            fields = call.grammar_fields if call is not None else ()
            if param is None or _concerns(param, fields):
                refused = f"{message} (refused with {request.grammar.describe()})"
                return GrammarUnsupported(refused, backend=name, status=status)
        if _is_rejection(status):
            return BackendRejected(message, backend=name, status=status)
        return BackendError(
            message,
            backend=name,
            retryable=True,
            retry_after=_retry_after(exc.response),
            status=status,
        )
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
        return BackendTimeout(f"{name}: no answer from {url} in time", backend=name)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return BackendError(
            f"{name}: connection to {url} failed: {str(cause) or type(cause).__name__}",
            backend=name,
            retryable=True,
        )
    if isinstance(exc, httpx.HTTPError):
        return BackendError(
            f"{name}: connection to {url} failed while streaming: {str(exc) or type(exc).__name__}",
            backend=name,
            retryable=True,
        )
    # An error event inside a stream: the engine failed the request after accepting it.
    return BackendError(
        f"{name}: engine error: {_engine_message(exc)}",
        backend=name,
        retryable=False,
    )
