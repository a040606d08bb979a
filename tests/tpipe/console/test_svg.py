"""The inline SVG charts: the values are in the markup, names are escaped, long series are thinned to
the shape (first, min, max, last of each pixel column), a route is drawn north up with its scale, and
nothing divides by zero on a flat or single-point series."""

from __future__ import annotations

import re

from tpipe.console import svg

T0 = 1_800_000_000_000


def _polyline(markup: str) -> list[tuple[float, float]]:
    points = re.search(r'<polyline class="series" points="([^"]*)"', markup)
    assert points is not None, markup[:300]
    return [(float(x), float(y)) for x, y in (p.split(",") for p in points.group(1).split())]


def test_a_short_series_marks_every_value_with_its_time() -> None:
    out = str(svg.time_series("BatteryLevel", [(T0 + 60_000, 80.5), (T0, 81.0), (T0 + 120_000, 79.25)], unit="%"))
    assert 'data-field="BatteryLevel"' in out and 'data-points="3"' in out
    assert re.findall(r'data-value="([^"]+)"', out) == ["81", "80.5", "79.25"]  # in time order
    assert "<title>2027-01-15 08:00:00Z: 81 %</title>" in out
    ys = [y for _, y in _polyline(out)]
    assert ys[0] < ys[1] < ys[2]  # higher values are drawn higher (smaller y)


def test_the_window_sets_the_time_axis() -> None:
    out = str(svg.time_series("VehicleSpeed", [(T0 + 1_800_000, 10.0)], since_ms=T0, until_ms=T0 + 3_600_000))
    [(x, _)] = _polyline(out)
    assert abs(x - (svg.PAD_L + (svg.W - svg.PAD_L - svg.PAD_R) / 2)) < 0.1  # half way along
    assert "2027-01-15 08:00:00Z" in out and "2027-01-15 09:00:00Z" in out


def test_a_flat_series_and_an_empty_one() -> None:
    flat = str(svg.time_series("Gear", [(T0, 3.0), (T0 + 1, 3.0)]))
    assert all(abs(y - _polyline(flat)[0][1]) < 1e-9 for _, y in _polyline(flat))
    assert ">4<" in flat and ">2<" in flat  # the value axis spreads one either side
    empty = str(svg.time_series("Odometer", [], unit="mi"))
    assert empty == '<p class="empty" data-field="Odometer">Odometer (mi): no values in this window</p>'


def test_names_are_escaped() -> None:
    out = str(svg.time_series("<script>x</script>", [(T0, 1.0)]))
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<b>" not in str(svg.bars("<b>", [("<i>", 1.0)]))


def test_a_long_series_is_thinned_to_its_shape() -> None:
    points = [(T0 + i * 1000, float(i % 1000)) for i in range(100_000)]
    points[54_321] = (points[54_321][0], -500.0)
    out = str(svg.time_series("PackCurrent", points))
    line = _polyline(out)
    columns = svg.W - svg.PAD_L - svg.PAD_R
    assert len(line) <= 4 * columns and 'data-points="100000"' in out
    assert "circle" not in out  # too many to mark
    lowest = max(y for _, y in line)
    assert abs(lowest - (svg.H - svg.PAD_B)) < 0.1  # the one minimum survived the thinning
    thin = svg._thin(points, columns, points[0][0], points[-1][0])
    assert points[0] in thin and points[-1] in thin and (points[54_321][0], -500.0) in thin
    assert thin == sorted(thin)


def test_bars_one_per_value() -> None:
    items = [(f"05-{d:02d}", float(d * 10)) for d in range(1, 15)]
    out = str(svg.bars("credits per day", items, unit="credits"))
    assert re.findall(r'<rect class="bar"[^>]*data-value="([^"]+)"', out) == [f"{d * 10}" for d in range(1, 15)]
    assert "<title>05-14: 140 credits</title>" in out
    assert len(re.findall(r'class="tick"[^>]*text-anchor="middle"', out)) == 7  # a label every other bar
    assert str(svg.bars("x", [])) == '<p class="empty">x: nothing to show</p>'
    zero = str(svg.bars("x", [("a", 0.0)]))
    assert 'height="0.0"' in zero


def test_the_route_is_north_up_with_its_scale() -> None:
    pts = [(T0 + 2000, 52.2, 5.1), (T0, 52.1, 5.1), (T0 + 1000, 52.15, 5.2)]
    out = str(svg.route(pts))
    line = _polyline(out)
    assert len(line) == 3 and 'data-points="3"' in out
    assert line[0][1] > line[2][1]  # the start (south) is drawn below the end (north)
    assert line[1][0] > line[0][0]  # east is to the right
    assert "11.13 km across" in out  # 0.1 degree of latitude
    assert "start 2027-01-15 08:00:00Z" in out and "(52.20000, 5.10000)" in out
    assert str(svg.route([])) == '<p class="empty">route: no Location in this window</p>'
    one = str(svg.route([(T0, 52.0, 5.0)]))
    assert 'data-points="1"' in one


def test_a_long_route_keeps_its_shape_and_its_end() -> None:
    pts = [(T0 + i, 52.0 + i * 1e-5, 5.0) for i in range(20_000)]
    line = _polyline(str(svg.route(pts)))
    assert len(line) <= 4001 and line[-1] == _polyline(str(svg.route(pts[-2:])))[-1]
