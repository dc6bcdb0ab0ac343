"""trunkline's one HTTP app (FastAPI). Today it serves the schema registry at the root paths.

The registry's routes sit at Confluent Schema Registry's paths (``/subjects``, ``/schemas``,
``/config``...) so that Confluent clients point at this app unchanged; catalog, lineage and
topic routes will join under their own prefixes. Every error is answered as Confluent
answers: ``{"error_code": ..., "message": ...}``.

Example:
    >>> from fastapi.testclient import TestClient  # doctest: +SKIP
    >>> with MetaStore.open("sqlite:///meta.db") as store:  # doctest: +SKIP
    ...     client = TestClient(create_app(SchemaRegistry(store)))
    ...     client.get("/subjects").json()
    []
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from trunkline import __version__
from trunkline._access import TokenAuth, exposure_problem
from trunkline.api.registry import DEFAULT_MAX_BODY_BYTES, HttpProblem, registry_router, respond
from trunkline.errors import MetaError, SchemaError, TrunklineError
from trunkline.schemas import SchemaRegistry

__all__ = ["DEFAULT_MAX_BODY_BYTES", "TOKEN_ENV", "check_exposure", "create_app", "serve"]

log = logging.getLogger("trunkline.api")

#: The environment variable holding the API token; read by the CLI, never below it.
TOKEN_ENV = "TRUNKLINE_API_TOKEN"  # noqa: S105 - a variable name, not a secret
#: Confluent Schema Registry's port.
DEFAULT_PORT = 8081


def create_app(
    registry: SchemaRegistry,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The HTTP app, with the schema registry's routes at the root paths.

    Args:
        registry: the registry to serve.
        token: when set, every request needs ``Authorization: Bearer <token>``, or Basic
            auth with the token as password (what Confluent clients send for
            ``basic.auth.user.info=<any user>:<token>``).
        max_body_bytes: larger request bodies are refused with 413.
    """
    app = FastAPI(title="trunkline", version=__version__, docs_url=None, redoc_url=None)
    app.include_router(registry_router(registry, max_body_bytes=max_body_bytes))
    app.add_exception_handler(SchemaError, _schema_error)
    app.add_exception_handler(HttpProblem, _http_problem)
    app.add_exception_handler(MetaError, _store_error)
    app.add_exception_handler(TrunklineError, _server_error)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    if token:
        app.add_middleware(TokenAuth, token=token)
    return app


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token.

    Raises:
        ConfigError: ``host`` is not a loopback address and there is no token.
    """
    problem = exposure_problem(
        host,
        token,
        risk="change or delete schemas",
        how=f"Set {TOKEN_ENV} (clients then send it as 'Authorization: Bearer <token>' or "
        "basic.auth.user.info=<user>:<token>)",
    )
    if problem is not None:
        raise problem


def serve(
    registry: SchemaRegistry,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Serve the app with uvicorn until interrupted. See :func:`check_exposure`."""
    import uvicorn

    check_exposure(host, token)
    app = create_app(registry, token=token, max_body_bytes=max_body_bytes)
    uvicorn.run(app, host=host, port=port, log_level="info")


def _error(request: Request, status: int, code: int, message: str) -> Response:
    return respond(request, {"error_code": code, "message": message}, status)


async def _schema_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SchemaError)
    return _error(request, exc.http_status, exc.error_code, str(exc))


async def _http_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpProblem)
    return _error(request, exc.status, exc.error_code, str(exc))


async def _store_error(request: Request, exc: Exception) -> Response:
    log.error("schema registry store error: %s", exc)
    return _error(request, 500, 50001, f"error in the backend data store: {exc}")


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("schema registry error: %s", exc)
    return _error(request, 500, 50001, str(exc))


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(
        request, exc.status_code, exc.status_code, f"HTTP {exc.status_code}: {exc.detail}"
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details: list[Any] = list(exc.errors())
    return _error(request, 422, 422, f"invalid request: {details}")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return _error(request, 500, 50001, "internal server error; see the server's log")
