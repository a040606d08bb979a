"""Plain-text output shared by the replay, reset and topics commands."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from consumers.replay.selection import ReplayError
from plumbing.logs import redact

__all__ = ["columns", "run_command"]


def columns(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns: the first left-aligned (a name), the others right-aligned (numbers)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)


def run_command(cmd: str, body: Callable[[], object]) -> int:
    """Run a command's body: 0 on success, 1 with ``tpipe <cmd>: error: ...`` on a refusal or a Kafka
    error (secrets redacted), 130 on Ctrl-C; a closed stdout (``| head``) ends quietly."""
    try:
        body()
    except ValidationError as exc:  # settings from the environment: one line per command, not pydantic's block
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"tpipe {cmd}: error: {redact(reasons)}", file=sys.stderr)
        return 1
    except (ReplayError, KafkaError, ValueError) as exc:
        print(f"tpipe {cmd}: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tpipe {cmd}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0
