"""``tpipe serve`` (the receiver) and ``tpipe token new|list|revoke``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvicorn

from ingest.settings import IngestSettings
from plumbing.cli_settings import add_settings_arguments, settings_from_args
from plumbing.output import add_format_argument, emit

DEFAULT_TOKENS_FILE = Path("var/tokens.json")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser("serve", help="run the webhook receiver")
    add_settings_arguments(serve, IngestSettings)
    serve.set_defaults(func=_serve)

    token = sub.add_parser("token", help="manage webhook tokens (digests only are stored)")
    token.add_argument("--tokens-file", type=Path, default=None, metavar="FILE",
                       help=f"the tokens file (env TPIPE_TOKENS_FILE; default {DEFAULT_TOKENS_FILE})")
    tsub = token.add_subparsers(dest="token_cmd", required=True)
    new = tsub.add_parser("new", help="create a token; it is printed once and never stored")
    new.add_argument("--label", default="", metavar="TEXT", help="a note to tell tokens apart in `tpipe token list`")
    new.set_defaults(func=_token_new)
    ls = tsub.add_parser("list", help="list tokens (ids, labels, dates; never the token)")
    add_format_argument(ls)
    ls.set_defaults(func=_token_list)
    rv = tsub.add_parser("revoke", help="revoke a token by id; receivers reload without restart")
    rv.add_argument("id")
    rv.set_defaults(func=_token_revoke)


def _tokens_file(args: argparse.Namespace) -> Path:
    import os

    if args.tokens_file:
        return Path(args.tokens_file)
    env = os.environ.get("TPIPE_TOKENS_FILE")
    return Path(env) if env else DEFAULT_TOKENS_FILE


def _token_new(args: argparse.Namespace) -> int:
    from ingest.errors import TokenError
    from ingest.tokens import TokensFile

    try:
        token, entry = TokensFile(_tokens_file(args)).new(args.label)
    except TokenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"id:    {entry.id}", file=sys.stderr)
    print("token (shown once, store it in Teslemetry's webhook settings):", file=sys.stderr)
    print(token)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from ingest.tokens import TokensFile

    entries = TokensFile(_tokens_file(args)).load()
    rows = [{"id": e.id, "status": "active" if e.active else "revoked", "created": e.created_at,
             "revoked": e.revoked_at, "label": e.label} for e in entries]
    emit(["id", "status", "created", "revoked", "label"], rows, fmt=args.format, null_text="-")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from ingest.errors import TokenError
    from ingest.tokens import TokensFile

    try:
        e = TokensFile(_tokens_file(args)).revoke(args.id)
    except TokenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"revoked {e.id} at {e.revoked_at}")
    return 0


def build_server(settings: IngestSettings) -> uvicorn.Server:
    """The receiver's server (uvloop, httptools with the edge limits; ``ingest.http.server``)."""
    from ingest.http.server import build_server as build

    return build(settings)


def _serve(args: argparse.Namespace) -> int:
    import signal

    settings = settings_from_args(IngestSettings, args)
    if settings.tokens_file is None and not settings.token and DEFAULT_TOKENS_FILE.exists():
        settings = settings.model_copy(update={"tokens_file": DEFAULT_TOKENS_FILE})
    from ingest.errors import TokenError

    try:
        server = build_server(settings)
    except TokenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # uvicorn re-raises the signal that stopped it once it has shut down; with these handlers in
    # place that re-raise is a no-op, so a graceful SIGTERM/Ctrl-C stop exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    from ingest.errors import ListenError

    try:
        server.run()
    except ListenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0 if server.started else 3
