"""`--help` of every command reads like hand-written help: no internals, real metavars, real defaults.

The sweep builds each command of ``tpipe.cli``'s table (``COMMANDS`` and ``WORKERS``) the way ``main``
does (``build_parser(argv)`` imports only that command) and renders the help of every parser under
it, sub-commands included."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest

from tpipe.cli import COMMANDS, WORKERS, build_parser

FORBIDDEN = ("CFG__", "cfg__", "Pydantic", "PosixPath", "SecretStr", "default None", "default factory",
             "default: None", "list[", "NoneType")
SECRET_ENV = {"TPIPE_KAFKA_SASL_PASSWORD": "help-s3cret-pw", "TPIPE_NOTIFY_HTTP_SECRET": "whsec_aGVscHNlY3JldA==",
              "TPIPE_TOKEN": '["help-s3cret-token"]'}


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.extend(_walk(sub, (*path, name)))
    return out


def _every_parser() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    argvs = [[c] for c in COMMANDS if c != "consume"] + [["consume", w] for w in WORKERS]
    for argv in argvs:
        for path, parser in _walk(build_parser(argv), ()):
            # a parser for an unchosen command is a stub (help only): keep the fully built one
            if path[: len(argv)] == tuple(argv) or tuple(argv)[: len(path)] == path:
                found[path] = parser
    return sorted(found.items())


PARSERS = _every_parser()


def test_the_sweep_covers_every_command_and_worker() -> None:
    paths = {p for p, _ in PARSERS}
    for c in COMMANDS:
        assert (c,) in paths
    for w in WORKERS:
        assert ("consume", w) in paths
    for nested in (("dlq", "list"), ("dlq", "show"), ("dlq", "redrive"), ("dlq", "stats"), ("lake", "sql"),
                   ("lake", "replay"), ("alerts", "active"), ("credits", "report"), ("token", "new")):
        assert nested in paths, nested
    assert len(paths) > 30


@pytest.mark.parametrize(("path", "parser"), PARSERS, ids=[" ".join(p) or "tpipe" for p, _ in PARSERS])
def test_help_reads_like_hand_written_help(path: tuple[str, ...], parser: argparse.ArgumentParser,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SECRET_ENV.items():
        monkeypatch.setenv(k, v)
    text = parser.format_help()
    for word in FORBIDDEN:
        assert word not in text, f"`tpipe {' '.join(path)} --help` shows {word!r}:\n{text}"
    for secret in SECRET_ENV.values():
        assert secret not in text
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or isinstance(action, argparse._HelpAction):
            continue
        flag = max(action.option_strings, key=len)
        assert action.help, f"{flag} of `tpipe {' '.join(path)}` has no help"
        if action.choices is None:  # the value's name as shown: the metavar, else argparse's DEST
            shown = str(action.metavar or action.dest.upper())
            assert re.fullmatch(r"[A-Z][A-Z0-9_:=,\[\].|-]*", shown), (flag, shown)
            assert not shown.startswith("CFG"), (flag, shown)


def test_settings_flags_show_their_variable_and_default_as_typed() -> None:
    help_text = dict(PARSERS)[("consume", "telemetry")].format_help()
    flat = " ".join(help_text.split())
    assert "--catalog-uri URI" in flat and "env TPIPE_CATALOG_URI" in flat
    assert "default sqlite:///<home>/lake/catalog.db" in flat
    assert "--drain-timeout-s SECONDS" in flat and "default 30)" in flat  # 30.0 shown as typed
    assert "--catalog-property KEY=VALUE" in flat and "repeatable" in flat
    assert "--metrics, --no-metrics" in flat and "default on" in flat
    assert "--kafka-sasl-password PASSWORD" in flat and "a secret: prefer the environment variable" in flat
    serve = " ".join(build_parser(["serve"])._subparsers._group_actions[0].choices["serve"].format_help().split())  # type: ignore[union-attr]
    assert "--spool-dir DIR" in serve and "default var/spool" in serve
    assert "--token TOKEN" in serve and "default factory" not in serve


def test_help_through_the_console_script() -> None:
    """What a user runs: `python -m tpipe.cli dlq redrive --help`, exit 0, the selection explained."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPIPE_")}
    out = subprocess.run([sys.executable, "-m", "tpipe.cli", "dlq", "redrive", "--help"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--to-url URL" in out.stdout and "--dry-run" in out.stdout and "--force" in out.stdout
    assert not any(w in out.stdout for w in FORBIDDEN)
