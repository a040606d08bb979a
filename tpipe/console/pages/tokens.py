"""Tokens: the webhook tokens of the receivers' tokens file — list, create (shown once), revoke.

The same code as ``tpipe token`` (``ingest.tokens.TokensFile``): the file keeps digests only, at most
10 tokens are active (creating an 11th is refused with the same message), running receivers reload
the file by themselves. Create and revoke are POSTs with the CSRF token, logged with who/what/when;
a created token is shown once, in the answer to its POST, and never logged or stored."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ingest.errors import TokenError
from ingest.tokens import MAX_ACTIVE_TOKENS, TokensFile
from tpipe.console.access import audit, checked_form
from tpipe.console.app import Console

TITLE = "Tokens"
PATH = "/tokens"


def routes(console: Console) -> list[Route]:
    tokens = TokensFile(console.settings.tokens_file)

    def show(request: Request, *, created: tuple[str, str] | None = None, error: str | None = None,
             status_code: int = 200) -> Response:
        entries = tokens.load()
        return console.render(request, "tokens.html", {
            "title": TITLE, "entries": entries, "active": sum(e.active for e in entries), "max": MAX_ACTIVE_TOKENS,
            "file": tokens.path.absolute(), "created": created, "error": error,
        }, status_code=status_code)

    async def page(request: Request) -> Response:
        return show(request)

    async def create(request: Request) -> Response:
        form = await checked_form(request)
        label = str(form.get("label") or "").strip()[:100]
        try:
            token, entry = await asyncio.to_thread(tokens.new, label)
        except TokenError as exc:
            audit(request, "token create refused", reason=str(exc), label=label)
            return show(request, error=str(exc), status_code=409)
        audit(request, "token created", token_id=entry.id, label=label)
        return show(request, created=(entry.id, token))

    async def revoke(request: Request) -> Response:
        form = await checked_form(request)
        token_id = str(form.get("id") or "")
        try:
            entry = await asyncio.to_thread(tokens.revoke, token_id)
        except TokenError as exc:
            return show(request, error=str(exc), status_code=404)
        audit(request, "token revoked", token_id=entry.id, label=entry.label)
        return RedirectResponse(PATH, status_code=303)

    return [Route(PATH, page, methods=["GET"]), Route(PATH + "/new", create, methods=["POST"]),
            Route(PATH + "/revoke", revoke, methods=["POST"])]
