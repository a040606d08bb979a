"""Who may use the console, and how a change is made.

* The console listens on 127.0.0.1 by default. Its own admin credential (``--console-user``,
  ``--console-password`` / ``TPIPE_CONSOLE_PASSWORD``; never a webhook token) is HTTP Basic; when a
  password is set every page needs it, and listening on any non-loopback address without one is
  refused at start.
* Every change (token create and revoke; redrive and replay to come) is a POST carrying a CSRF token:
  the ``tpipe_csrf`` cookie (``SameSite=Strict``, ``HttpOnly``) and the form's ``csrf`` field must be
  equal, and an ``Origin`` header, when the browser sends one, must be this console. A POST without
  credentials (when required) or without a matching token gets 403 and changes nothing.
* Each change is logged on ``tpipe.console.audit`` with who (the user, or ``local``), from where,
  what, and when (the log line's time).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import secrets
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp

__all__ = ["AccessMiddleware", "audit", "checked_form"]

CSRF_COOKIE = "tpipe_csrf"
CSRF_FIELD = "csrf"
audit_log = logging.getLogger("tpipe.console.audit")


class AccessMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, *, user: str, password: str | None, secure_cookie: bool = False) -> None:
        super().__init__(app)
        self.user = user
        self.password = password
        self.secure_cookie = secure_cookie

    def _authenticated(self, request: Request) -> bool:
        if self.password is None:
            return True
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_password

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        mutating = request.method not in ("GET", "HEAD", "OPTIONS")
        if not self._authenticated(request):
            if mutating:
                return PlainTextResponse("forbidden: credentials required\n", status_code=403)
            return PlainTextResponse("the console needs its admin credential\n", status_code=401,
                                     headers={"WWW-Authenticate": 'Basic realm="tpipe console", charset="UTF-8"'})
        request.state.user = self.user if self.password is not None else "local"
        if mutating and not _same_origin(request):
            return PlainTextResponse("forbidden: cross-origin request\n", status_code=403)
        token = request.cookies.get(CSRF_COOKIE) or ""
        fresh = len(token) < 32
        if fresh:
            if mutating:
                return PlainTextResponse("forbidden: no CSRF token\n", status_code=403)
            token = secrets.token_urlsafe(32)
        request.state.csrf = token
        response = await call_next(request)
        if fresh:
            response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=self.secure_cookie)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
        return response


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # not a browser's cross-site request (browsers send Origin with every POST)
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def checked_form(request: Request) -> FormData:
    """The POSTed form, once its ``csrf`` field matches the cookie (403 otherwise)."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    cookie = getattr(request.state, "csrf", None)
    if not isinstance(sent, str) or not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
        raise HTTPException(403, "forbidden: the form's CSRF token does not match")
    return form


def audit(request: Request, action: str, **details: Any) -> None:
    """One log line per change: who, from where, what (the line's ``ts`` says when)."""
    client = request.client.host if request.client else "?"
    audit_log.info("console change", extra={"who": getattr(request.state, "user", "?"), "client": client,
                                            "action": action, **details})
