"""The credits report: balance, usage per day and per type, burn rate, projected run-out date.

``build_report`` computes the numbers from the ledger; ``render_report`` prints them (tables, JSON or CSV);
``render_png`` draws daily usage (bars) and end-of-day balance (line) with matplotlib's Agg backend.

The report is *as of* a time: ``as_of_ms`` when given (``--as-of``), else the ledger's newest event
(``as_of_source`` says which), so a ledger of an old stream reports its own last days instead of
empty tables ending today. The per-day and per-type tables cover the ``days`` calendar days (UTC)
ending with the as-of day. Burn rate = credits spent in the trailing window (``window_days``, ending
at as-of) divided by the window length in days. Projected run-out = as-of + balance / burn rate
(none when nothing was spent in the window).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from consumers.credits.store import CreditStore
from plumbing.output import emit, emit_json
from schemas.times import format_ms, now_ms

__all__ = ["CreditReport", "build_report", "render_png", "render_report", "report_dict", "summary_rows"]

DAY_MS = 86_400_000


@dataclass
class CreditReport:
    as_of_ms: int
    as_of_source: str  # "--as-of", "newest event" or "now: the ledger is empty"
    since_ms: int  # first instant of the per-day and per-type tables
    until_ms: int  # their end (excluded)
    days: int
    window_days: float
    balance: int | None
    balance_at_ms: int | None
    totals: dict[str, int]
    window_cost: int
    burn_per_day: float
    runs_out_ms: int | None
    by_day: list[dict[str, Any]] = field(default_factory=list)
    by_type: list[dict[str, Any]] = field(default_factory=list)
    alarm: dict[str, Any] | None = None


def build_report(store: CreditStore, *, days: int = 14, window_days: float = 7.0, as_of_ms: int | None = None) -> CreditReport:
    newest = store.current()
    if as_of_ms is not None:
        as_of, source = as_of_ms, "--as-of"
    elif newest is not None:
        as_of, source = int(newest["created_at_ms"]), "newest event"
    else:
        as_of, source = now_ms(), "now: the ledger is empty"
    window_start = as_of - int(window_days * DAY_MS)
    window_cost = store.cost_between(window_start, as_of + 1)
    burn = window_cost / window_days if window_days > 0 else 0.0
    balance = int(newest["balance"]) if newest else None
    runs_out = None
    if balance is not None and burn > 0:
        runs_out = as_of + int(max(balance, 0) / burn * DAY_MS)
    # ``days`` calendar days ending with as_of's day (UTC), every day listed even without events.
    end_day = datetime.fromtimestamp(as_of / 1000, UTC).date()
    first_day = end_day - timedelta(days=max(days, 1) - 1)
    since = int(datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC).timestamp() * 1000)
    until = since + max(days, 1) * DAY_MS
    rows = {r["day"]: r for r in store.usage_by_day(since, until)}
    # Balance carried into days without events: the balance at the end of the previous day.
    carry = store.balance_before(since)
    by_day = []
    for i in range(max(days, 1)):
        d = (first_day + timedelta(days=i)).isoformat()
        r = rows.get(d)
        if r is not None and r["balance"] is not None:
            carry = r["balance"]
        by_day.append({"day": d, "events": r["events"] if r else 0, "cost": r["cost"] if r else 0, "balance": carry})
    return CreditReport(
        as_of_ms=as_of,
        as_of_source=source,
        since_ms=since,
        until_ms=until,
        days=days,
        window_days=window_days,
        balance=balance,
        balance_at_ms=int(newest["created_at_ms"]) if newest else None,
        totals=store.totals(),
        window_cost=window_cost,
        burn_per_day=burn,
        runs_out_ms=runs_out,
        by_day=by_day,
        by_type=store.usage_by_type(since, until),
        alarm=store.alarm_state(),
    )


def window_text(r: CreditReport) -> str:
    first = format_ms(r.since_ms)[:10]
    last = format_ms(r.until_ms - 1)[:10]
    end = {"newest event": "the newest event's day", "--as-of": "the --as-of day"}.get(r.as_of_source, "today")
    return f"{first} to {last} (UTC; {r.days} day{'s' if r.days != 1 else ''} ending with {end})"


def summary_rows(r: CreditReport) -> list[tuple[str, str]]:
    summary = [
        ("as of", f"{format_ms(r.as_of_ms, '')} ({r.as_of_source})"),
        ("balance", "" if r.balance is None else f"{r.balance} (at {format_ms(r.balance_at_ms, '')})"),
        ("events in ledger", f"{r.totals['events']} ({r.totals['snapshots']} snapshots)"),
        ("credits spent (all time)", str(r.totals["cost"])),
        (f"spent in last {r.window_days:g} days", str(r.window_cost)),
        ("burn rate", f"{r.burn_per_day:.1f} credits/day"),
        ("projected run-out", format_ms(r.runs_out_ms, "")[:10] if r.runs_out_ms is not None else "never (no usage)"),
    ]
    if r.alarm is not None:
        state = "armed" if r.alarm["armed"] else "fired (waiting for the balance to recover)"
        summary.append(("low-balance alarm", f"below {r.alarm['threshold']}: {state}"))
    summary.append(("tables cover", window_text(r)))
    return summary


def report_dict(r: CreditReport) -> dict[str, Any]:
    """The report as plain data (``--format json``)."""
    return {
        "as_of": format_ms(r.as_of_ms), "as_of_source": r.as_of_source,
        "window": {"from": format_ms(r.since_ms), "to": format_ms(r.until_ms), "days": r.days},
        "balance": r.balance, "balance_at": format_ms(r.balance_at_ms, "") or None, "totals": r.totals,
        "burn_window_days": r.window_days, "burn_window_cost": r.window_cost, "burn_per_day": r.burn_per_day,
        "runs_out": format_ms(r.runs_out_ms) if r.runs_out_ms is not None else None,
        "alarm": r.alarm, "by_day": r.by_day, "by_type": r.by_type,
    }


def render_report(r: CreditReport, *, fmt: str = "table", out: TextIO | None = None) -> None:
    """The report as tables (a summary, usage per day, usage per type), JSON, or CSV (the three
    tables one after the other, each with its header line, separated by an empty line)."""
    out = out if out is not None else sys.stdout
    if fmt == "json":
        emit_json(report_dict(r), out)
        return
    summary = [{"credits": k, "value": v} for k, v in summary_rows(r)]
    window = window_text(r)
    sections = [
        (["credits", "value"], summary, None),
        (["day", "events", "cost", "balance"], r.by_day, f"Usage per day: {window}"),
        (["type", "events", "cost"], r.by_type, f"Usage per type: {window}"),
    ]
    for i, (columns, rows, title) in enumerate(sections):
        if i:
            print(file=out)
        emit(columns, rows, fmt=fmt, out=out, title=title if fmt == "table" else None)


def render_png(r: CreditReport, path: str | Path) -> Path:
    """Daily usage bars and end-of-day balance line; returns the written path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    days = [datetime.fromisoformat(d["day"]) for d in r.by_day]
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    try:
        # datetimes are fine at runtime (matplotlib's date units); its stubs only list numbers
        ax.bar(days, [d["cost"] for d in r.by_day], width=0.8, color="#4C78A8", label="credits used")  # type: ignore[arg-type]
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
        ax.set_ylabel("credits used per day")
        ax2 = ax.twinx()
        bal = [(x, d["balance"]) for x, d in zip(days, r.by_day, strict=True) if d["balance"] is not None]
        if bal:
            ax2.plot([x for x, _ in bal], [b for _, b in bal], color="#E45756", marker="o", label="balance")  # type: ignore[arg-type]
        ax2.set_ylabel("balance (end of day)")
        if r.alarm is not None:
            ax2.axhline(r.alarm["threshold"], color="#E45756", linestyle=":", linewidth=1, label="low-balance threshold")
        title = f"Teslemetry credits, {window_text(r)}; burn {r.burn_per_day:.1f}/day"
        if r.runs_out_ms is not None:
            title += f", runs out ~{format_ms(r.runs_out_ms, '')[:10]}"
        ax.set_title(title)
        handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
        fig.autofmt_xdate()
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3, frameon=False)
        fig.tight_layout()
        fig.savefig(out, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return out
