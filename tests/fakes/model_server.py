"""A scripted model server on 127.0.0.1 for the **real** agent CLIs: Anthropic, OpenAI Responses and Gemini APIs.

One aiohttp server speaks enough of three provider APIs for Claude Code, Codex and Gemini CLI to run a whole
headless session against it, with no internet:

=============  ====================================================================  =============================
provider       endpoints                                                             the CLI is pointed at it by
=============  ====================================================================  =============================
Anthropic      ``POST /v1/messages`` (SSE when ``"stream": true``, JSON otherwise),   ``ANTHROPIC_BASE_URL=<url>``
               ``POST /v1/messages/count_tokens``
OpenAI         ``POST /v1/responses`` (SSE), ``GET /v1/models``                       a Codex model provider with
                                                                                     ``base_url = "<url>/v1"``
Gemini         ``POST /v1beta/models/{model}:generateContent`` and                    ``GOOGLE_GEMINI_BASE_URL=<url>``
               ``:streamGenerateContent?alt=sse``, ``:countTokens``
=============  ====================================================================  =============================

The conversation is a :class:`Script`: tool steps (:class:`ReadFile`, :class:`WriteFile`, :class:`Shell`, and for
Gemini CLI any named :class:`ToolCall`) the "model" asks the CLI to run, one per response, then a final text. The
server is stateless about the conversation: the step it plays is the number of tool results already in the request,
so a CLI's retries, side requests and restarts cannot put it out of step. Each CLI gets its steps in its own tools:
Claude Code ``Read``/``Write``/``Bash``; Codex ``exec_command`` (or, for models with Codex's JavaScript "code
mode", an ``exec`` cell that awaits ``tools.exec_command``); Gemini CLI
``read_file``/``write_file``/``run_shell_command``. :meth:`ModelServer.tool_results` is what the CLI sent back from
its tools. A request without the tools (a session title, Gemini CLI's routing classifier, a quota probe) gets a
short answer; a request that wants JSON gets JSON that fits its schema.

:meth:`ModelServer.fail` makes the next requests fail the way the provider does, with its real error body and
headers (:data:`FailureKind`): a usage limit (with the reset time the provider states), a quota with none, a
rejected key. Every request is kept in :attr:`ModelServer.requests`.

:func:`serve_in_thread` runs the server on an event loop of its own, for a test that blocks while a CLI talks to
it (one that polls a daemon process with ``time.sleep``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pytest_asyncio
from aiohttp import web

__all__ = [
    "Failure",
    "FailureKind",
    "ModelServer",
    "Provider",
    "ReadFile",
    "RecordedRequest",
    "Script",
    "Shell",
    "ToolCall",
    "WriteFile",
    "model_server",
    "serve_in_thread",
]

Provider = Literal["anthropic", "openai", "gemini"]


@dataclass(frozen=True)
class Shell:
    """Run ``command`` in the CLI's shell tool (cwd: the worktree)."""

    command: str


@dataclass(frozen=True)
class WriteFile:
    """Write ``content`` to ``path`` with the CLI's file-writing tool (an absolute path: Claude's Write wants one).
    Codex has no such tool; it gets the same write as a shell heredoc."""

    path: str
    content: str


@dataclass(frozen=True)
class ReadFile:
    """Read ``path`` (absolute) with the CLI's file-reading tool; Codex gets ``cat``. Claude Code's Write and Edit
    refuse a file that was not read first in the session, as the real model knows."""

    path: str


@dataclass(frozen=True)
class ToolCall:
    """Gemini CLI: call its tool ``name`` with ``args`` as given, whether the CLI declared it or not (a real model
    can name a tool it was not offered; the CLI answers with an error). The other CLIs run ``command`` instead."""

    name: str
    args: dict[str, Any]
    command: str = "true"


Step = Shell | WriteFile | ReadFile | ToolCall


@dataclass
class Script:
    """What the model does: ``steps`` one per response, then ``final`` as its last message.

    ``input_tokens``/``output_tokens``/``cached_tokens`` are the usage each response reports (a CLI sums them).
    """

    steps: list[Step] = field(default_factory=list)
    final: str = "Done."
    input_tokens: int = 1200
    output_tokens: int = 80
    cached_tokens: int = 200


FailureKind = Literal["quota", "billing", "auth"]
"""How :meth:`ModelServer.fail` fails, with each provider's real status, body and headers:

``quota``
    the plan's usage limit, reset at ``reset_at`` (default: in an hour). Anthropic: 429 ``rate_limit_error`` with
    the ``anthropic-ratelimit-unified-*`` headers (status ``rejected``, ``reset``, ``representative-claim``) and
    ``retry-after``. OpenAI: 429 ``usage_limit_reached`` with ``resets_at``/``resets_in_seconds`` and the
    ``x-codex-primary-*`` headers. Gemini: 429 ``RESOURCE_EXHAUSTED`` with a per-minute ``QuotaFailure`` and
    ``RetryInfo.retryDelay`` (Gemini CLI retries delays up to 300 s itself); without ``reset_at``, the daily
    free-tier quota, which states no reset.
``billing``
    a quota that states no reset: Anthropic 400 "Your credit balance is too low", OpenAI 429
    ``insufficient_quota``, Gemini's daily free-tier quota.
``auth``
    the key is rejected: Anthropic 401 ``authentication_error``, OpenAI 401 ``invalid_api_key``, Gemini 400
    ``API_KEY_INVALID`` (what generativelanguage.googleapis.com answers to a bad key).
"""


@dataclass
class Failure:
    kind: FailureKind
    reset_at: int | None = None  # epoch seconds the provider states for a usage limit
    remaining: int | None = None  # how many more requests fail; None: all of them
    provider: Provider | None = None  # only this provider's API fails; None: all three


@dataclass(frozen=True)
class RecordedRequest:
    provider: Provider
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int
    reply: str  # "tool:<name>", "final", "aux", "error:<kind>", "other"


_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):04d}{uuid.uuid4().hex[:20]}"


def _sse(events: Iterable[tuple[str | None, dict[str, Any]]]) -> bytes:
    out = []
    for name, data in events:
        head = f"event: {name}\n" if name else ""
        out.append(f"{head}data: {json.dumps(data)}\n\n")
    return "".join(out).encode()


def _fill_schema(schema: Any) -> Any:
    """A minimal value that satisfies a JSON schema (OpenAPI-style upper-case types too)."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _fill_schema(sub) for name, sub in props.items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return max(1, int(schema.get("minimum", 1)))
    if kind == "boolean":
        return False
    return "simple"


def _claude_main_loop(body: dict[str, Any]) -> bool:
    """Whether an Anthropic request is Claude Code's main loop, not a side request (session title, topic).

    Its main request manages its context (``context_management``, 2.1.197 and 2.1.332); 2.1.197's main system
    prompt also began "You are an interactive agent", which 2.1.332 replaced ("You are an agent working with …").
    """
    return "context_management" in body or "You are an interactive agent" in json.dumps(body.get("system"))


class ModelServer:
    """The server. ``await start()``, point a CLI at :attr:`url`, set :attr:`script`, ``await stop()``."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.failure: Failure | None = None
        self.break_streams = 0  # the next N streamed Anthropic main-loop replies stop after message_start
        # Claude Code run with no tools (``--tools ""``: agentos.llm's one-shot questions) sends its main request
        # without tools, like a side request; while this holds answers, such a request gets the next one (the last
        # one again when one is left), told from the side requests as Claude Code's main-loop request.
        self.one_shot_answers: list[str] = []
        self.requests: list[RecordedRequest] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/messages/count_tokens", self._anthropic_count)
        app.router.add_post("/v1/responses", self._openai)
        app.router.add_get("/v1/models", self._openai_models)
        app.router.add_post("/v1beta/models/{call}", self._gemini)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ switches

    def fail(
        self,
        kind: FailureKind,
        *,
        reset_at: int | datetime | None = None,
        count: int | None = None,
        provider: Provider | None = None,
    ) -> None:
        """Fail the next ``count`` model requests (all when None) as ``kind``; ``reset_at``: when a usage limit
        resets (epoch seconds or an aware datetime); ``provider``: fail only that API (one CLI of several)."""
        if isinstance(reset_at, datetime):
            reset_at = int(reset_at.timestamp())
        self.failure = Failure(kind, reset_at, count, provider)

    def replies(self, provider: Provider | None = None) -> list[str]:
        return [r.reply for r in self.requests if provider is None or r.provider == provider]

    def tool_results(self, provider: Provider) -> list[str]:
        """What the CLI sent back for each tool call, in order, as text (read from its latest model request)."""
        for r in reversed(self.requests):
            if r.provider == provider and r.status == 200 and r.reply != "other" and r.reply != "aux":
                return _tool_results(provider, r.body)
        return []

    def _take_failure(self, provider: Provider) -> Failure | None:
        f = self.failure
        if f is None or f.provider not in (None, provider):
            return None
        if f.remaining is not None:
            if f.remaining <= 0:
                self.failure = None
                return None
            f.remaining -= 1
        return f

    def _record(self, provider: Provider, request: web.Request, body: dict[str, Any], status: int, reply: str) -> None:
        self.requests.append(
            RecordedRequest(provider, request.method, request.path_qs, dict(request.headers), body, status, reply)
        )

    def _next(self, done: int) -> Step | None:
        return self.script.steps[done] if done < len(self.script.steps) else None

    @staticmethod
    def _reset_in(f: Failure) -> int:
        return max(1, (f.reset_at or int(time.time()) + 3600) - int(time.time()))

    # ------------------------------------------------------------ Anthropic Messages API

    async def _anthropic_count(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record("anthropic", request, body, 200, "other")
        return web.json_response({"input_tokens": self.script.input_tokens})

    def _anthropic_error(self, f: Failure) -> web.Response:
        request_id = _id("req")
        headers = {"request-id": request_id}
        if f.kind == "auth":
            headers["x-should-retry"] = "false"
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            status = 401
        elif f.kind == "quota":  # a Claude plan's 5-hour window is used up: the unified limit headers say when
            reset = f.reset_at or int(time.time()) + 3600
            headers |= {
                "anthropic-ratelimit-unified-status": "rejected",
                "anthropic-ratelimit-unified-reset": str(reset),
                "anthropic-ratelimit-unified-representative-claim": "five_hour",
                "anthropic-ratelimit-unified-5h-status": "rejected",
                "anthropic-ratelimit-unified-5h-reset": str(reset),
                "anthropic-ratelimit-unified-5h-utilization": "1.0",
                "anthropic-ratelimit-unified-fallback": "unavailable",
                "anthropic-ratelimit-unified-overage-status": "rejected",
                "anthropic-ratelimit-unified-overage-disabled-reason": "org_level_disabled",
                "retry-after": str(self._reset_in(f)),
            }
            error = {
                "type": "rate_limit_error",
                "message": "This request would exceed your account's rate limit. Please try again later.",
            }
            status = 429
        else:  # "billing": API billing without credits
            headers["x-should-retry"] = "false"
            error = {
                "type": "invalid_request_error",
                "message": "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
                "to upgrade or purchase credits.",
            }
            status = 400
        return web.json_response(
            {"type": "error", "error": error, "request_id": request_id}, status=status, headers=headers
        )

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if (f := self._take_failure("anthropic")) is not None:
            error = self._anthropic_error(f)
            self._record("anthropic", request, body, error.status, f"error:{f.kind}")
            return error
        tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        messages = body.get("messages") or []
        done = sum(
            1
            for m in messages
            if m.get("role") == "user" and isinstance(m.get("content"), list)
            for block in m["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        )
        content: list[dict[str, Any]]
        step = self._next(done)
        if not tools and self.one_shot_answers and _claude_main_loop(body):
            text = self.one_shot_answers.pop(0) if len(self.one_shot_answers) > 1 else self.one_shot_answers[0]
            reply, content, stop = "one_shot", [{"type": "text", "text": text}], "end_turn"
        elif "Bash" not in tools and not (self.script.steps and _claude_main_loop(body)):
            # a side request (title, topic, quota probe): answer briefly. A tool-less main loop with a script is
            # a one-shot question to a model that calls tools it was not offered (Write, Bash): played as scripted.
            reply, content, stop = "aux", [{"type": "text", "text": "ok"}], "end_turn"
        elif step is None:
            reply, content, stop = "final", [{"type": "text", "text": self.script.final}], "end_turn"
        else:
            if isinstance(step, WriteFile) and ("Write" in tools or not tools):
                name, args = "Write", {"file_path": step.path, "content": step.content}
            elif isinstance(step, ReadFile) and "Read" in tools:
                name, args = "Read", {"file_path": step.path}
            else:
                name, args = "Bash", {"command": _shell(step), "description": "Run the scripted step"}
            reply = f"tool:{name}"
            content = [{"type": "tool_use", "id": _id("toolu"), "name": name, "input": args}]
            stop = "tool_use"
        self._record("anthropic", request, body, 200, reply)
        s = self.script
        model = str(body.get("model") or "claude-sonnet-4-5")
        usage = {
            "input_tokens": s.input_tokens - s.cached_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": s.cached_tokens,
            "output_tokens": s.output_tokens,
        }
        message = {
            "id": _id("msg"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return web.json_response(message, headers={"request-id": _id("req")})
        if self.break_streams > 0 and reply != "aux":  # the stream stops early: no content, no message_stop
            self.break_streams -= 1
            start = {"type": "message_start", "message": message | {"content": [], "stop_reason": None}}
            return web.Response(body=_sse([("message_start", start)]), content_type="text/event-stream")
        events: list[tuple[str | None, dict[str, Any]]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": message | {"content": [], "stop_reason": None, "usage": usage | {"output_tokens": 1}},
                },
            ),
        ]
        for index, block in enumerate(content):
            if block["type"] == "text":
                events += [
                    (
                        "content_block_start",
                        {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                    ),
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": block["text"]},
                        },
                    ),
                ]
            else:
                events += [
                    (
                        "content_block_start",
                        {"type": "content_block_start", "index": index, "content_block": block | {"input": {}}},
                    ),
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
                        },
                    ),
                ]
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events += [
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": s.output_tokens},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return web.Response(body=_sse(events), content_type="text/event-stream", headers={"request-id": _id("req")})

    # ------------------------------------------------------------ OpenAI Responses API (Codex)

    async def _openai_models(self, request: web.Request) -> web.Response:
        self._record("openai", request, {}, 200, "other")
        return web.json_response({"object": "list", "data": [], "models": []})

    def _openai_error(self, f: Failure, key: str) -> web.Response:
        headers: dict[str, str] = {"x-request-id": _id("req")}
        if f.kind == "auth":
            status = 401
            shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else key
            error: dict[str, Any] = {
                "message": f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        elif f.kind == "quota":  # a ChatGPT plan's usage limit, as the Codex backend states it
            status = 429
            reset = f.reset_at or int(time.time()) + 3600
            error = {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": "plus",
                "resets_at": reset,
                "resets_in_seconds": self._reset_in(f),
            }
            headers |= {
                "x-codex-primary-used-percent": "100.0",
                "x-codex-primary-window-minutes": "300",
                "x-codex-primary-reset-at": str(reset),
                "x-codex-primary-reset-after-seconds": str(self._reset_in(f)),
                "x-codex-secondary-used-percent": "40.0",
                "x-codex-secondary-window-minutes": "10080",
                "x-codex-secondary-reset-at": str(reset + 86400),
                "x-codex-secondary-reset-after-seconds": str(self._reset_in(f) + 86400),
            }
        else:  # an API key with no credit left
            status = 429
            error = {
                "message": "You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        return web.json_response({"error": error}, status=status, headers=headers)

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if (f := self._take_failure("openai")) is not None:
            error = self._openai_error(f, request.headers.get("Authorization", "").removeprefix("Bearer "))
            self._record("openai", request, body, error.status, f"error:{f.kind}")
            return error
        items = [i for i in body.get("input") or [] if isinstance(i, dict)]
        done = sum(1 for i in items if i.get("type") in ("function_call_output", "custom_tool_call_output"))
        functions = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        code_mode = "exec_command" not in functions and _has_code_mode(items)
        step = self._next(done)
        response_id = _id("resp")
        item: dict[str, Any]
        if step is not None and ("exec_command" in functions or code_mode):
            command = _shell(step)
            if code_mode:  # Codex's "code mode": one JavaScript `exec` cell that calls the nested tools
                source = (
                    f"const r = await tools.exec_command({{cmd: {json.dumps(command)}}});\n"
                    "text(typeof r === 'string' ? r : JSON.stringify(r));\n"
                )
                item = {
                    "type": "custom_tool_call",
                    "id": _id("ctc"),
                    "call_id": _id("call"),
                    "name": "exec",
                    "input": source,
                    "status": "completed",
                }
                reply = "tool:exec"
            else:
                item = {
                    "type": "function_call",
                    "id": _id("fc"),
                    "call_id": _id("call"),
                    "name": "exec_command",
                    "arguments": json.dumps({"cmd": command}),
                    "status": "completed",
                }
                reply = "tool:exec_command"
        else:
            text = self.script.final if step is None else "ok"
            reply = "final" if step is None else "aux"
            item = {
                "type": "message",
                "id": _id("msg"),
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        self._record("openai", request, body, 200, reply)
        s = self.script
        usage = {
            "input_tokens": s.input_tokens,
            "input_tokens_details": {"cached_tokens": s.cached_tokens},
            "output_tokens": s.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": s.input_tokens + s.output_tokens,
        }
        model = str(body.get("model") or "gpt-5")
        base = {"id": response_id, "object": "response", "created_at": int(time.time()), "model": model}
        events: list[tuple[str | None, dict[str, Any]]] = [
            ("response.created", {"type": "response.created", "response": base | {"status": "in_progress"}}),
            ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
        ]
        if item["type"] == "message":
            events.append(
                (
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": 0,
                        "content_index": 0,
                        "delta": item["content"][0]["text"],
                    },
                )
            )
        events += [
            ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            (
                "response.completed",
                {
                    "type": "response.completed",
                    "response": base | {"status": "completed", "output": [item], "usage": usage},
                },
            ),
        ]
        return web.Response(body=_sse(events), content_type="text/event-stream")

    # ------------------------------------------------------------ Gemini API

    def _gemini_error(self, f: Failure) -> web.Response:
        if f.kind == "auth":  # what generativelanguage.googleapis.com says to a bad key
            status, error = (
                400,
                {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"},
                        }
                    ],
                },
            )
        else:  # a stated reset: a quota with RetryInfo (Gemini CLI retries by itself up to 300 s, stops past that)
            per_day = f.kind == "billing" or f.reset_at is None  # the free tier's daily quota: no reset stated
            quota_id = (
                "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
                if per_day
                else "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
            )
            details: list[dict[str, Any]] = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                            "quotaId": quota_id,
                            "quotaDimensions": {"location": "global", "model": "gemini-2.5-pro"},
                            "quotaValue": "100" if per_day else "5",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [
                        {
                            "description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                        }
                    ],
                },
            ]
            if not per_day:
                details.append(
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{self._reset_in(f)}s"}
                )
            status, error = (
                429,
                {
                    "code": 429,
                    "message": "You exceeded your current quota, please check your plan and billing details. For more "
                    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": details,
                },
            )
        return web.json_response({"error": error}, status=status)

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model, _, method = request.match_info["call"].partition(":")
        if method == "countTokens":
            self._record("gemini", request, body, 200, "other")
            return web.json_response({"totalTokens": self.script.input_tokens})
        if (f := self._take_failure("gemini")) is not None:
            error = self._gemini_error(f)
            self._record("gemini", request, body, error.status, f"error:{f.kind}")
            return error
        config = body.get("generationConfig") or {}
        declared = {
            d.get("name")
            for t in body.get("tools") or []
            if isinstance(t, dict)
            for d in t.get("functionDeclarations") or []
            if isinstance(d, dict)
        }
        done = sum(
            1
            for c in body.get("contents") or []
            if isinstance(c, dict)
            for part in c.get("parts") or []
            if isinstance(part, dict) and "functionResponse" in part
        )
        step = self._next(done)
        parts: list[dict[str, Any]]
        if config.get("responseMimeType") == "application/json":  # routing classifier, next-speaker check, …
            schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
            reply, parts = "aux", [{"text": json.dumps(_fill_schema(schema))}]
        elif not declared & {"read_file", "run_shell_command"} and not (
            body.get("tools") and "CLI agent specializing" in json.dumps(body.get("systemInstruction"))
        ):  # not the main loop (which, under a deny-all policy, declares no tool but keeps its system prompt)
            reply, parts = "aux", [{"text": "ok"}]
        elif step is None:
            reply, parts = "final", [{"text": self.script.final}]
        else:
            if isinstance(step, ToolCall):
                name, args = step.name, step.args
            elif isinstance(step, WriteFile) and "write_file" in declared:
                name, args = "write_file", {"file_path": step.path, "content": step.content}
            elif isinstance(step, ReadFile) and "read_file" in declared:
                name, args = "read_file", {"file_path": step.path}
            else:
                name, args = "run_shell_command", {"command": _shell(step), "description": "Run the scripted step"}
            reply, parts = f"tool:{name}", [{"functionCall": {"name": name, "args": args}}]
        self._record("gemini", request, body, 200, reply)
        s = self.script
        response = {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {
                "promptTokenCount": s.input_tokens,
                "candidatesTokenCount": s.output_tokens,
                "cachedContentTokenCount": s.cached_tokens,
                "totalTokenCount": s.input_tokens + s.output_tokens,
            },
            "modelVersion": model,
            "responseId": _id("gem"),
        }
        if method == "streamGenerateContent":
            return web.Response(body=_sse([(None, response)]), content_type="text/event-stream")
        return web.json_response(response)

    # ------------------------------------------------------------ anything else

    async def _other(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"raw": raw[:2000].decode("utf-8", "replace")}
        provider: Provider = "gemini" if request.path.startswith("/v1beta") else "anthropic"
        self._record(provider, request, body if isinstance(body, dict) else {"value": body}, 404, "other")
        return web.json_response(
            {"type": "error", "error": {"type": "not_found_error", "message": f"no route {request.path}"}}, status=404
        )


def _tool_results(provider: Provider, body: dict[str, Any]) -> list[str]:
    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    if provider == "anthropic":
        return [
            text(block.get("content"))
            for m in body.get("messages") or []
            if isinstance(m, dict) and isinstance(m.get("content"), list)
            for block in m["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]
    if provider == "openai":
        return [
            text(i.get("output"))
            for i in body.get("input") or []
            if isinstance(i, dict) and i.get("type") in ("function_call_output", "custom_tool_call_output")
        ]
    return [
        text(part["functionResponse"].get("response"))
        for c in body.get("contents") or []
        if isinstance(c, dict)
        for part in c.get("parts") or []
        if isinstance(part, dict) and isinstance(part.get("functionResponse"), dict)
    ]


def _shell(step: Step) -> str:
    if isinstance(step, Shell):
        return step.command
    if isinstance(step, ReadFile):
        return f"cat {_quote(step.path)}"
    if isinstance(step, ToolCall):
        return step.command
    marker = "AGENTOS_EOF"
    return f"cat > {_quote(step.path)} <<'{marker}'\n{step.content.rstrip(chr(10))}\n{marker}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _has_code_mode(items: list[dict[str, Any]]) -> bool:
    """Whether Codex offered its JavaScript ``exec`` tool (in an ``additional_tools`` input item)."""

    def names(tools: Any) -> Iterable[str]:
        for t in tools if isinstance(tools, list) else []:
            if isinstance(t, dict):
                yield str(t.get("name"))
                yield from names(t.get("tools"))

    return any("exec" in set(names(i.get("tools"))) for i in items if i.get("type") == "additional_tools")


@pytest_asyncio.fixture
async def model_server() -> AsyncIterator[ModelServer]:
    """A running :class:`ModelServer` with an empty script; stopped after the test."""
    server = ModelServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextmanager
def serve_in_thread(script: Script | None = None) -> Iterator[ModelServer]:
    """A started :class:`ModelServer` on its own event loop in a background thread; stopped on exit.

    Setting :attr:`ModelServer.script` or calling :meth:`ModelServer.fail` from the test's thread between runs
    is safe; :attr:`ModelServer.requests` is only appended to, so reading it any time is too.
    """
    server = ModelServer(script)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="model-server", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=30)
        yield server
    finally:
        try:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
