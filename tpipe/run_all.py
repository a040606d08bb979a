"""``tpipe run``: the whole pipeline on this machine — a local Kafka broker, the receiver and every
consumer worker — with an embedded default for everything (``make run``)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

WORKERS = ("telemetry", "alerts", "credits")
RUN_TOKEN_LABEL = "make-run"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run broker, receiver and workers locally (what `make run` does)")
    p.add_argument("--home", "--var-dir", dest="home", type=Path, default=None, metavar="DIR",
                   help="state root: broker data, spool, tokens, lake and databases (env TPIPE_HOME; default ./var)")
    p.add_argument("--port", type=int, default=8080, metavar="PORT", help="receiver HTTP port (default 8080)")
    p.add_argument("--kafka-port", type=int, default=9092, metavar="PORT", help="local broker port (default 9092)")
    p.add_argument("--kafka", default=None, metavar="HOST:PORT", help="use this Kafka instead of starting a local broker")
    p.add_argument("--no-workers", action="store_true", help="only broker and receiver")
    p.add_argument("--console-port", type=int, default=8070, help="the console's port on 127.0.0.1 (0: no console)")
    p.set_defaults(func=_run)


def _fresh_token(tokens_file: Path) -> str:
    from ingest.tokens import TokensFile

    tf = TokensFile(tokens_file)
    for entry in tf.load():  # one token per `make run`: retire the previous run's
        if entry.active and entry.label == RUN_TOKEN_LABEL:
            tf.revoke(entry.id)
    token, _ = tf.new(RUN_TOKEN_LABEL)
    return token


def _wait_ready(url: str, procs: dict[str, subprocess.Popen[bytes]], timeout: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc = procs["receiver"].poll()
        if rc is not None:
            raise SystemExit(f"the receiver exited with {rc} during start")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # poll interval while the receiver starts
    raise SystemExit(f"the receiver was not ready within {timeout:.0f}s ({url})")


def _run(args: argparse.Namespace) -> int:
    from localbroker import LocalBroker

    var: Path = Path(args.home or os.environ.get("TPIPE_HOME") or "var").expanduser().resolve()
    var.mkdir(parents=True, exist_ok=True)
    broker = None
    bootstrap = args.kafka
    if bootstrap is None:
        broker = LocalBroker(port=args.kafka_port, data_dir=var / "kafka", die_with_parent=True)
        print(f"starting Kafka on 127.0.0.1:{args.kafka_port} (data in {var / 'kafka'}) ...", flush=True)
        broker.start()
        bootstrap = broker.bootstrap
    token = _fresh_token(var / "tokens.json")
    env = {
        **os.environ,
        "TPIPE_KAFKA": bootstrap,
        "TPIPE_HOME": str(var),
        "TPIPE_TOKENS_FILE": str(var / "tokens.json"),
        "TPIPE_SPOOL_DIR": str(var / "spool"),
        "TPIPE_CATALOG_URI": f"sqlite:///{var / 'lake' / 'catalog.db'}",
        "TPIPE_WAREHOUSE": str(var / "lake" / "warehouse"),
        "TPIPE_ALERTS_DB_URL": f"sqlite:///{var / 'alerts.db'}",
        "TPIPE_CREDITS_DB_URL": f"sqlite:///{var / 'credits.db'}",
    }
    (var / "lake" / "warehouse").mkdir(parents=True, exist_ok=True)
    tpipe = [sys.executable, "-m", "tpipe.cli"]
    procs: dict[str, subprocess.Popen[bytes]] = {
        "receiver": subprocess.Popen([*tpipe, "serve", "--port", str(args.port)], env=env)
    }
    try:
        _wait_ready(f"http://127.0.0.1:{args.port}/readyz", procs)
        if not args.no_workers:
            for name in WORKERS:
                procs[name] = subprocess.Popen([*tpipe, "consume", name], env=env)
        if args.console_port:
            # the run's token lets the DLQ page redrive webhook bodies into this receiver
            procs["console"] = subprocess.Popen([*tpipe, "console", "--console-port", str(args.console_port),
                                                 "--receiver-url", f"http://127.0.0.1:{args.port}"],
                                                env={**env, "TPIPE_REPLAY_TOKEN": token})
        console = f"http://127.0.0.1:{args.console_port}/" if args.console_port else "off (--console-port 0)"
        url = f"http://127.0.0.1:{args.port}/webhook"
        print(
            f"""
teslemetry-pipeline is running
  Kafka      {bootstrap}
  webhook    {url}
  console    {console}
  token      {token}        (new for this run; `tpipe token list` shows ids)
  workers    {', '.join(n for n in procs if n not in ('receiver', 'console')) or 'none'}
  state      {var}   (read it from anywhere: TPIPE_HOME={var} tpipe alerts active)
  health     http://127.0.0.1:{args.port}/readyz   metrics http://127.0.0.1:{args.port}/metrics

Try it:
  curl -s -X POST '{url}' -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\
    -d '{{"createdAt":"2025-03-11T21:04:10.201Z","vin":"LRW3F7EK4NC700000","data":{{"VehicleSpeed":34.8,"BatteryLevel":78.4}}}}'

Ctrl-C stops everything (the receiver drains its spool to Kafka first).
""",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while True:
            for name, p in procs.items():
                if p.poll() is not None:
                    print(f"{name} exited with {p.returncode}; stopping", file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.5)  # supervision tick
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        if broker is not None:
            broker.stop()
