"""Who may call trunkline's HTTP endpoints: the token check, and when a token is required.

Every trunkline server (the API app, the ``http`` source) follows the same two rules:
it listens on loopback unless told otherwise, and it refuses to listen anywhere else
without a token. A client sends the token as ``Authorization: Bearer <token>``, or as the
password of Basic auth (what Confluent clients send for ``basic.auth.user.info``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from trunkline.errors import ConfigError

__all__ = ["TokenAuth", "exposure_problem", "is_loopback", "token_matches"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def exposure_problem(host: str, token: str | None, *, risk: str, how: str) -> ConfigError | None:
    """The error to raise when ``host`` is beyond loopback and there is no token, else None.

    ``risk`` says what anyone who reaches the server could do; ``how`` how to set a token.
    """
    if token or is_loopback(host):
        return None
    return ConfigError(
        f"refusing to serve on {host!r} without a token: anyone who can reach it could "
        f"{risk}. {how}, or bind 127.0.0.1"
    )


def token_matches(authorization: bytes, token: bytes) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` (Bearer or Basic)."""
    scheme, _, value = authorization.partition(b" ")
    scheme = scheme.lower()
    if scheme == b"bearer":
        return hmac.compare_digest(value.strip(), token)
    if scheme == b"basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(decoded.partition(b":")[2], token)
    return False


class TokenAuth:
    """ASGI middleware: every HTTP request must carry the token (Bearer or Basic password)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {
                "error_code": 401,
                "message": "unauthorized: send the API token as a Bearer token "
                "or as the password of Basic auth",
            },
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="trunkline"'},
        )
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        return token_matches(header, self.token)
