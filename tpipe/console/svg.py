"""Charts drawn as inline SVG on the server: a time series, bars, a route. No script, no tiles, no
asset: the pages work offline and the values are in the markup (each point's ``<title>`` is its
tooltip). Long series are thinned to the first/min/max/last point of each pixel column."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["bars", "route", "time_series"]

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 720, 180, 56, 12, 12, 28
MAX_MARKED = 240  # points drawn as dots (with a tooltip) when the series is not longer than this


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z"


def _thin(points: Sequence[tuple[int, float]], columns: int, t0: int, t1: int) -> list[tuple[int, float]]:
    """At most four points per pixel column (first, min, max, last), in time order."""
    if len(points) <= columns * 4:
        return list(points)
    buckets: dict[int, list[tuple[int, float]]] = {}
    for p in points:
        buckets.setdefault(int((p[0] - t0) * (columns - 1) / max(t1 - t0, 1)), []).append(p)
    out: list[tuple[int, float]] = []
    for _, pts in sorted(buckets.items()):
        keep = {pts[0], min(pts, key=lambda p: p[1]), max(pts, key=lambda p: p[1]), pts[-1]}
        out.extend(sorted(keep))
    return out


def time_series(field: str, points: Sequence[tuple[int, float]], *, unit: str = "",
                since_ms: int | None = None, until_ms: int | None = None) -> Markup:
    """``points`` (epoch ms, value) as a line over ``[since_ms, until_ms]`` (default: the points' span)."""
    label = escape(f"{field} ({unit})" if unit else field)
    if not points:
        return Markup(f'<p class="empty" data-field="{escape(field)}">{label}: no values in this window</p>')
    pts = sorted(points)
    t0 = since_ms if since_ms is not None else pts[0][0]
    t1 = until_ms if until_ms is not None else pts[-1][0]
    if t1 <= t0:
        t1 = t0 + 1
    lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def xy(t: int, v: float) -> tuple[float, float]:
        return PAD_L + (t - t0) * pw / (t1 - t0), PAD_T + (hi - v) * ph / (hi - lo)

    thin = _thin(pts, pw, t0, t1)
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, v) for t, v in thin))
    parts = [
        f'<svg class="chart" data-field="{escape(field)}" data-points="{len(pts)}" viewBox="0 0 {W} {H}" '
        f'role="img" aria-label="{label}">',
        f'<text class="title" x="{PAD_L}" y="{PAD_T + 2}">{label}</text>',
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}"/>',
        f'<line class="axis" x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}"/>',
        f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + 10}" text-anchor="end">{_fmt(hi)}</text>',
        f'<text class="tick" x="{PAD_L - 4}" y="{H - PAD_B}" text-anchor="end">{_fmt(lo)}</text>',
        f'<text class="tick" x="{PAD_L}" y="{H - 8}">{_when(t0)}</text>',
        f'<text class="tick" x="{W - PAD_R}" y="{H - 8}" text-anchor="end">{_when(t1)}</text>',
        f'<polyline class="series" points="{line}"/>',
    ]
    if len(pts) <= MAX_MARKED:
        for t, v in pts:
            x, y = xy(t, v)
            parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" data-value="{_fmt(v)}">'
                         f'<title>{_when(t)}: {_fmt(v)}{escape(" " + unit if unit else "")}</title></circle>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(title: str, items: Sequence[tuple[str, float]], *, unit: str = "") -> Markup:
    """One bar per (label, value), labels under every few bars."""
    if not items:
        return Markup(f'<p class="empty">{escape(title)}: nothing to show</p>')
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    top = max(max(v for _, v in items), 1)
    step = pw / len(items)
    every = max(1, math.ceil(len(items) / 8))
    parts = [f'<svg class="chart bars" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">',
             f'<text class="title" x="{PAD_L}" y="{PAD_T + 2}">{escape(title)}</text>',
             f'<text class="tick" x="{PAD_L - 4}" y="{PAD_T + 10}" text-anchor="end">{_fmt(top)}</text>',
             f'<line class="axis" x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}"/>']
    for i, (name, v) in enumerate(items):
        h = v * ph / top
        x = PAD_L + i * step
        parts.append(f'<rect class="bar" x="{x + step * 0.1:.1f}" y="{H - PAD_B - h:.1f}" width="{step * 0.8:.1f}" '
                     f'height="{h:.1f}" data-value="{_fmt(v)}"><title>{escape(name)}: {_fmt(v)} {escape(unit)}'
                     f'</title></rect>')
        if i % every == 0:
            parts.append(f'<text class="tick" x="{x + step / 2:.1f}" y="{H - 8}" text-anchor="middle">'
                         f'{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def route(points: Sequence[tuple[int, float, float]], *, size: int = 420) -> Markup:
    """The (epoch ms, latitude, longitude) points as one line, north up, distances true at its middle
    latitude; a dot at the start, a ring at the end."""
    if not points:
        return Markup('<p class="empty">route: no Location in this window</p>')
    pts = sorted(points)
    lats, lons = [p[1] for p in pts], [p[2] for p in pts]
    lat0, lon0 = min(lats), min(lons)
    k = math.cos(math.radians((lat0 + max(lats)) / 2))
    span_x = (max(lons) - lon0) * k or 1e-6
    span_y = (max(lats) - lat0) or 1e-6
    scale = (size - 20) / max(span_x, span_y)

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return 10 + (lon - lon0) * k * scale, size - 10 - (lat - lat0) * scale

    coords = [xy(la, lo) for _, la, lo in pts]
    if len(coords) > 4000:  # keep the shape, not every point
        stride = math.ceil(len(coords) / 4000)
        coords = coords[::stride] + [coords[-1]]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    (sx, sy), (ex, ey) = coords[0], coords[-1]
    km = max(span_x, span_y) * 111.32
    return Markup(
        f'<svg class="route" data-points="{len(pts)}" viewBox="0 0 {size} {size}" role="img" aria-label="route">'
        f'<polyline class="series" points="{line}"/>'
        f'<circle class="start" cx="{sx:.1f}" cy="{sy:.1f}" r="5"><title>start {_when(pts[0][0])}</title></circle>'
        f'<circle class="end" cx="{ex:.1f}" cy="{ey:.1f}" r="6"><title>end {_when(pts[-1][0])} '
        f'({pts[-1][1]:.5f}, {pts[-1][2]:.5f})</title></circle>'
        f'<text class="tick" x="{size - 10}" y="{size - 2}" text-anchor="end">{km:.2f} km across</text></svg>'
    )
