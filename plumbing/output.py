"""What listing commands print: a table, JSON or CSV (``--format table|json|csv``), through ``rich``.

``emit(columns, rows, fmt=...)`` takes the rows as dicts (column -> value; a row may hold more keys
than the table shows, and JSON gets them all):

* ``table`` on a terminal: a ``rich`` table (header rule, numbers right-aligned), its title on a line
  above and its caption below; when the output is not a terminal the same table as plain columns
  (no box, no colour, never wrapped or cut, no trailing blanks), so ``| grep`` and ``| less`` see
  whole lines;
* ``json``: one JSON array of the row dicts (times as ISO-8601 text, nested objects kept);
* ``csv``: a header line and one line per row (the table's columns; nested values as JSON).

Cells render the same way everywhere: ``None`` as empty (or ``null_text``), floats to 10
significant digits, datetimes as ISO-8601 UTC, dicts and lists as compact JSON.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TextIO

import orjson
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["FORMATS", "Format", "add_format_argument", "cell", "console_for", "emit", "emit_json", "is_terminal"]

Format = Literal["table", "json", "csv"]
FORMATS: tuple[str, ...] = ("table", "json", "csv")


def add_format_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--format", choices=FORMATS, default="table",
        help="table (plain columns when the output is not a terminal), json (an array of objects) or csv "
             "(default table)",
    )


def is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def console_for(out: TextIO) -> Console:
    """A rich console writing to ``out``: styled on a terminal, plain and unwrapped otherwise."""
    if is_terminal(out):
        return Console(file=out, markup=False, emoji=False, highlight=False)
    return Console(file=out, width=1_000_000, no_color=True, markup=False, emoji=False, highlight=False,
                   soft_wrap=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def cell(value: Any, *, null_text: str = "") -> str:
    """One value as table or CSV text."""
    if value is None:
        return null_text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, (dict, list, tuple)):
        return orjson.dumps(value, default=_json_default).decode()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


def _numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None and v != ""]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


def emit_json(data: Any, out: TextIO | None = None) -> None:
    out = out if out is not None else sys.stdout
    out.write(orjson.dumps(data, default=_json_default, option=orjson.OPT_INDENT_2).decode() + "\n")
    out.flush()


def _values(columns: Sequence[str], row: Mapping[str, Any] | Sequence[Any]) -> list[Any]:
    if isinstance(row, Mapping):
        return [row.get(c) for c in columns]
    return list(row)


def emit(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
    *,
    fmt: str = "table",
    out: TextIO | None = None,
    title: str | None = None,
    caption: str | None = None,
    null_text: str = "",
    max_width: int | None = None,
) -> None:
    """Print ``rows`` (dicts, or sequences in ``columns`` order) as a table, JSON or CSV (see the
    module doc). ``title`` and ``caption`` show only in table form; ``max_width`` cuts longer table
    cells with an ellipsis."""
    out = out if out is not None else sys.stdout
    if fmt == "json":
        emit_json([r if isinstance(r, Mapping) else dict(zip(columns, r, strict=False)) for r in rows], out)
        return
    values = [_values(columns, r) for r in rows]
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for v in values:
            writer.writerow([cell(x) for x in v])
        out.flush()
        return
    terminal = is_terminal(out)
    console = console_for(out)
    table = Table(box=box.SIMPLE_HEAD if terminal else None, show_edge=terminal, pad_edge=terminal,
                  header_style="bold" if terminal else None)
    for i, c in enumerate(columns):
        table.add_column(c, justify="right" if _numeric([v[i] for v in values]) else "left",
                         no_wrap=not terminal, overflow="fold")
    for v in values:
        cells = []
        for x in v:
            text = cell(x, null_text=null_text)
            if max_width is not None and len(text) > max_width:
                text = text[: max(max_width - 1, 0)] + "…"
            cells.append(Text(text))
        table.add_row(*cells)
    if title:
        console.print(Text(title, style="bold" if terminal else ""))
    if terminal:
        console.print(table)
    else:  # plain columns: no padding after the last one
        with console.capture() as captured:
            console.print(table)
        out.write("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n")
    if caption:
        console.print(Text(caption, style="dim" if terminal else ""))
    out.flush()
