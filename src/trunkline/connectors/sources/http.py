"""The ``http`` source: ``POST /topics/{topic}`` with JSON, answered once it is in the hub.

Example ``trunkline.yaml`` entry::

    sources:
      intake:
        type: http
        port: 8088               # 127.0.0.1 unless host says otherwise
        topics: [orders, clicks]
        key: order_id            # the field whose value keys the records
        keys: {clicks: session}  # per topic, where it differs
        token: "${INTAKE_TOKEN}" # required when host is not loopback

A request body is a JSON array of objects or JSON lines (one object per line); either way
it becomes one batch of records of the topic in the path. The answer comes only once the
batch is durable in the hub (``200 {"records": n, ...}``), or says why it was not written:

=====  ===============================================================================
401    no token, or a wrong one (Bearer, or the password of Basic auth)
404    a topic this source does not write (the known ones are listed)
413    a body larger than ``max_body``
415    a content type that is not JSON
400    a body that is not JSON, not objects, or without the key field (which element or
       line, at which column, and what was expected), or a batch the topic's contract
       rejects (policy ``reject``); with policy ``dead_letter`` the failing records go to
       ``<topic>.dlq`` and the answer counts them
503    the source is busy (``max_pending`` requests waiting), stopping, or the hub failed;
       nothing of the batch is written, the client should retry (``Retry-After``)
=====  ===============================================================================

A bad body is refused whole and never reaches the hub. The records go through the
runtime like any source's: its transforms, then the hub as ``Project.hub`` (so topic
contracts apply). There is nothing to resume after a restart: a client retries what was
not answered with 200 (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Self

import anyio
import duckdb
import pyarrow as pa
from pydantic import BeforeValidator, Field, SecretStr, model_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trunkline._access import TokenAuth, exposure_problem, is_loopback
from trunkline.config import Duration, Size
from trunkline.config._base import EnvValue
from trunkline.config._problems import invalid
from trunkline.connectors.base import (
    Capabilities,
    ConnectorContext,
    Delivery,
    JSONValue,
    LineageDataset,
    Source,
    SourceBatch,
    SourceSettings,
    TopicName,
    settings_error,
)
from trunkline.connectors.sources._body import BadBody, parse_body
from trunkline.errors import InvalidRecord, TargetUnavailable

__all__ = ["HttpSource"]

_JSON_TYPES = frozenset(
    {"", "application/json", "application/x-ndjson", "application/jsonl", "text/plain"}
)


def _from_environment(value: Any) -> Any:
    if isinstance(value, str) and not isinstance(value, EnvValue):
        raise invalid(
            message="the token must come from the environment, not the project file",
            hint='write token: "${INTAKE_TOKEN}" and set INTAKE_TOKEN where trunkline runs',
        )
    return value


class HttpConfig(SourceSettings):
    """Settings of the ``http`` source."""

    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="The address to listen on; anything but loopback needs a token.",
    )
    port: int = Field(8088, ge=0, le=65535, description="The port (0: any free port).")
    topics: Annotated[tuple[TopicName, ...], Field(min_length=1)] = Field(
        description="The topics clients may post to, as /topics/<topic>."
    )
    key: str | None = Field(
        None,
        min_length=1,
        description="The field whose value keys the records; records without it are refused.",
    )
    keys: dict[str, str] = Field(
        default_factory=dict, description="The key field per topic, where it differs from key."
    )
    token: Annotated[SecretStr, BeforeValidator(_from_environment)] | None = Field(
        None,
        description="The token clients send (Bearer, or the password of Basic auth), from "
        "the environment: '${VAR}'. Required when host is not loopback.",
    )
    max_body: Size = Field(
        16 * 1024 * 1024, description="Larger request bodies are refused with 413."
    )
    max_pending: int = Field(
        16,
        ge=1,
        description="Requests waiting to be written at once; more are answered 503 (busy).",
    )
    wait: Duration = Field(
        30_000,
        description="How long a request waits for its turn before it is answered 503 "
        "(and not written).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        unknown = sorted(set(self.keys) - set(self.topics))
        if unknown:
            raise settings_error(
                type(self),
                "keys",
                unknown[0],
                f"'keys' names topic {unknown[0]!r}, which is not in 'topics'",
            )
        if self.token is None and not is_loopback(self.host):
            raise settings_error(
                type(self),
                "host",
                self.host,
                f"listening on {self.host!r} needs a token: anyone who can reach it could "
                "write into the hub",
                'add token: "${INTAKE_TOKEN}", or listen on 127.0.0.1',
            )
        return self

    def key_for(self, topic: str) -> str | None:
        return self.keys.get(topic, self.key)


@dataclass(eq=False)  # identity: requests are kept in a set
class _Request:
    """A parsed body waiting for the runtime to write it."""

    topic: str
    records: pa.Table
    answer: Future[Delivery] = field(default_factory=Future)
    taken: bool = False
    cancelled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bool:
        with self.lock:
            if self.cancelled:
                return False
            self.taken = True
            return True

    def cancel(self) -> bool:
        """Give up waiting, if the runtime has not taken the request yet."""
        with self.lock:
            if self.taken:
                return False
            self.cancelled = True
            return True

    def settle(self, delivery: Delivery) -> None:
        if not self.answer.done():
            self.answer.set_result(delivery)


class _Stopping(Exception):
    """The source is closing: the request was not written."""


def _problem(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"error_code": status, "message": message}, status, dict(headers or {}))


class HttpSource(Source):
    """Serves ``POST /topics/{topic}``; each request body is one batch, answered when durable."""

    Config: ClassVar[type[HttpConfig]] = HttpConfig
    # One process listens on the port.
    capabilities: ClassVar[Capabilities] = Capabilities(exclusive=True)

    config: HttpConfig

    def __init__(self, name: str, config: HttpConfig) -> None:
        super().__init__(name, config)
        self._queue: queue.Queue[_Request] = queue.Queue(config.max_pending)
        self._open: set[_Request] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._context: ConnectorContext | None = None
        self._duck: duckdb.DuckDBPyConnection | None = None
        self.address: tuple[str, int] = (config.host, config.port)

    def topics(self) -> tuple[str, ...]:
        return tuple(self.config.topics)

    # -- lifecycle --------------------------------------------------------------------

    def open(self, context: ConnectorContext, state: JSONValue | None) -> None:
        import uvicorn

        self._context = context
        self._closing.clear()
        config = self.config
        token = config.token.get_secret_value() if config.token is not None else None
        problem = exposure_problem(
            config.host, token, risk="write into the hub", how="Set 'token' in the settings"
        )
        if problem is not None:
            raise problem
        sock = self._bind()
        self._duck = duckdb.connect()
        self.address = (config.host, sock.getsockname()[1])
        app = Starlette(routes=[Route("/topics/{topic}", self._post, methods=["POST"])])
        app.add_exception_handler(Exception, self._unexpected)
        asgi: Any = TokenAuth(app, token) if token else app
        server = uvicorn.Server(
            uvicorn.Config(
                asgi,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=5,
            )
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"http-{self.name}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise TargetUnavailable(f"the http source {self.name!r} did not start serving")
            time.sleep(0.005)
        host, port = self.address
        context.register_system("http", f"http://{host}:{port}")
        context.log.info("%s: serving POST /topics/{topic} on %s:%d", self.name, host, port)

    def lineage(self) -> tuple[LineageDataset, ...]:
        return tuple(LineageDataset(t, f"/topics/{t}", "endpoint") for t in self.config.topics)

    def _bind(self) -> socket.socket:
        host, port = self.config.host, self.config.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]"), port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            # Retryable: the port may be held by this source's previous life for a moment.
            raise TargetUnavailable(
                f"the http source {self.name!r} cannot listen on {host}:{port}: "
                f"{exc.strerror or exc}"
            ) from exc
        return sock

    def close(self) -> None:
        self._closing.set()
        # Requests not written now never will be: their clients hear so and may retry.
        with self._lock:
            waiting = list(self._open)
            self._open.clear()
        for request in waiting:
            if not request.answer.done():
                request.answer.set_exception(_Stopping())
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._server = None
        if self._duck is not None:
            self._duck.close()
            self._duck = None

    def snapshot(self) -> JSONValue:
        return {}  # nothing to resume: clients retry what was not answered with 200

    def backlog(self) -> float | None:
        with self._lock:
            return float(sum(r.records.nbytes for r in self._open if not r.taken))

    backlog_unit: ClassVar[str] = "bytes"

    def poll(self, timeout: float) -> SourceBatch | None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                request = self._queue.get(timeout=max(0.0, remaining))
            except queue.Empty:
                return None
            if request.take():
                break
            if remaining <= 0:
                return None

        def delivered(delivery: Delivery) -> None:
            with self._lock:
                self._open.discard(request)
            request.settle(delivery)

        return SourceBatch(
            request.topic,
            request.records,
            position={"topic": request.topic, "records": request.records.num_rows},
            on_delivery=delivered,
        )

    # -- serving ----------------------------------------------------------------------

    def _count(self, status: int) -> None:
        if self._context is not None:
            self._context.metrics.count(f"http_{status}")

    async def _post(self, request: Request) -> Response:
        response = await self._answer(request)
        self._count(response.status_code)
        return response

    async def _answer(self, request: Request) -> Response:
        topic = str(request.path_params["topic"])
        config = self.config
        if topic not in config.topics:
            known = ", ".join(config.topics)
            return _problem(
                404,
                f"unknown topic {topic!r}: this source writes to {known} (POST /topics/<topic>)",
            )
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in _JSON_TYPES and not media.endswith("+json"):
            return _problem(
                415,
                f"unsupported content type {media!r}: send application/json (an array of "
                "objects) or application/x-ndjson (one object per line)",
            )
        if self._closing.is_set():
            return _problem(503, "the source is stopping; retry", {"Retry-After": "1"})
        limit = config.max_body
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _problem(413, f"the body has {int(declared)} bytes; the limit is {limit}")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return _problem(413, f"the body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            records = await anyio.to_thread.run_sync(self._parse, body, config.key_for(topic))
        except BadBody as exc:
            return _problem(400, f"nothing was written: {exc}")
        if not records.num_rows:
            return JSONResponse({"topic": topic, "records": 0, "dead_lettered": 0})
        pending = _Request(topic, records)
        with self._lock:
            self._open.add(pending)
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            with self._lock:
                self._open.discard(pending)
            return _problem(
                503,
                f"busy: {config.max_pending} requests are waiting to be written; retry",
                {"Retry-After": "1"},
            )
        return await self._await(pending)

    async def _await(self, pending: _Request) -> Response:
        answer = asyncio.wrap_future(pending.answer)
        retry = {"Retry-After": "1"}
        try:
            try:
                delivery = await asyncio.wait_for(asyncio.shield(answer), self.config.wait / 1000)
            except TimeoutError:
                if pending.cancel():
                    with self._lock:
                        self._open.discard(pending)
                    message = "not written: the hub did not take the batch in time; retry"
                    return _problem(503, message, retry)
                delivery = await answer  # being written now: the answer follows
        except _Stopping:
            return _problem(503, "not written: the source is stopping; retry", retry)
        return self._delivered(pending, delivery)

    def _delivered(self, pending: _Request, delivery: Delivery) -> Response:
        error = delivery.error
        if error is None:
            body: dict[str, Any] = {
                "topic": pending.topic,
                "records": delivery.written,
                "dead_lettered": delivery.dead_lettered,
            }
            if delivery.filtered:
                body["filtered"] = delivery.filtered
            return JSONResponse(body)
        if isinstance(error, InvalidRecord):
            return _problem(400, str(error))
        return _problem(
            503,
            f"not written: the hub failed ({type(error).__name__}: {error}); retry",
            {"Retry-After": "1"},
        )

    def _parse(self, body: bytes, key: str | None) -> pa.Table:
        # A cursor per request: requests are parsed on several threads at once.
        if self._duck is None:
            raise BadBody("the source is stopping; retry")
        cursor = self._duck.cursor()
        try:
            return parse_body(body, key, cursor)
        finally:
            cursor.close()

    async def _unexpected(self, request: Request, exc: Exception) -> Response:
        if self._context is not None:
            self._context.log.exception("%s: error serving %s", self.name, request.url.path)
        return _problem(500, "internal error; nothing was written; see the server's log")
