"""``tpipe console``: the operator's web console (see ``tpipe.console``)."""

from __future__ import annotations

import argparse
import sys

from plumbing.cli_settings import add_settings_arguments, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from tpipe.console.settings import ConsoleSettings

    p = sub.add_parser(
        "console", help="the operator's web console: overview, events, vehicles, alerts, credits, DLQ, replay, tokens",
        description="A web console over the running pipeline: receivers' health, Kafka, the lake, the alerts and "
        "credits stores, the DLQ and its redrive, replays, webhook tokens. Listens on 127.0.0.1:8070 by default; set --console-password "
        "(TPIPE_CONSOLE_PASSWORD) to require the admin credential, which listening elsewhere needs.",
    )
    add_settings_arguments(p, ConsoleSettings)
    p.set_defaults(func=_console)


def _console(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from plumbing.logs import register_secret
    from tpipe.console.app import build_app
    from tpipe.console.settings import ConsoleSettings

    settings = settings_from_args(ConsoleSettings, args)
    password = settings.console_password.get_secret_value() if settings.console_password else None
    if password is not None:
        register_secret(password)
    if settings.replay_token is not None:
        register_secret(settings.replay_token.get_secret_value())
    if not settings.loopback_only() and not password:
        print(f"tpipe console: error: listening on {settings.console_host} needs --console-password "
              "(TPIPE_CONSOLE_PASSWORD)", file=sys.stderr)
        return 2
    if password is not None and len(password) < 12:
        print("tpipe console: error: --console-password must be at least 12 characters", file=sys.stderr)
        return 2
    config = uvicorn.Config(build_app(settings), host=settings.console_host, port=settings.console_port,
                            log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    host = f"[{settings.console_host}]" if ":" in settings.console_host else settings.console_host
    logging.getLogger("tpipe.console").info("console starting", extra={
        "url": f"http://{host}:{settings.console_port}/", "receivers": settings.receiver_url,
        "kafka": settings.kafka, "credential_required": password is not None})
    server.run()
    return 0 if server.started else 3
