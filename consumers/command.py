"""How the consumer-side commands end: exit codes and one-line errors, shared by every command.

``run_command("dlq redrive", body)`` runs ``body`` and turns what it raises into the exit status:

* 0 on success (or ``body``'s own int);
* 2 for ``UsageError`` (bad input: a value that is not a time, an option combination that makes no
  sense) and ``StoreMissingError`` (a read command pointed at a database, catalog or table that does
  not exist: it never creates one), printed as ``tpipe <cmd>: error: ...``;
* 1 for ``CommandError`` (a refusal: the group has members, a URL answered 400 ...), a Kafka error
  or a ``ValueError``;
* 130 on Ctrl-C; a closed stdout (``| head``) ends quietly.

Messages pass through ``plumbing.logs.redact``: tokens and passwords never reach the terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from consumers.errors import CommandError, StoreMissingError, UsageError
from plumbing.logs import redact

__all__ = ["CommandError", "StoreMissingError", "UsageError", "run_command"]








def run_command(cmd: str, body: Callable[[], int | None]) -> int:
    try:
        rc = body()
    except CommandError as exc:
        print(f"tpipe {cmd}: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except ValidationError as exc:  # settings from the environment: one line, not pydantic's block
        reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"tpipe {cmd}: error: {redact(reasons)}", file=sys.stderr)
        return 2
    except (KafkaError, ValueError) as exc:
        print(f"tpipe {cmd}: error: {redact(str(exc) or repr(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tpipe {cmd}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return int(rc or 0)
