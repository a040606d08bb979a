"""Vehicle: one car's latest known values, a chart of any field over a window, its route drawn from
``Location`` (no map tiles), and its active alerts.

The lake is read through ``consumers.lake.query`` (the deduplicating views of ``tpipe lake sql``,
``LATEST_SQL`` of ``tpipe lake latest``) for this VIN and window only, read once into memory
(``tpipe.console.lake_window``) for the two questions asked of it; each chart and the route keep at
most ``POINTS`` values (the newest), and the page says how long the lake took."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consumers.alerts.store import AlertStore
from consumers.errors import StoreMissingError
from consumers.lake.query import LATEST_SQL
from tpipe.console import svg
from tpipe.console.app import Console
from tpipe.console.lake_window import read_once
from tpipe.console.pages.common import Query, query_of

TITLE = "Vehicle"
PATH = "/vehicle"
POINTS = 20_000  # values per chart (and route points) read from the lake, newest first
DEFAULT_FIELDS = "BatteryLevel,VehicleSpeed"
#: units of common fields, as Tesla reports them
UNITS = {
    "BatteryLevel": "%", "Soc": "%", "ChargeLimitSoc": "%", "VehicleSpeed": "mph", "Odometer": "mi",
    "EstBatteryRange": "mi", "RatedRange": "mi", "IdealBatteryRange": "mi", "InsideTemp": "°C",
    "OutsideTemp": "°C", "ACChargingPower": "kW", "DCChargingPower": "kW", "ChargerVoltage": "V",
    "PackVoltage": "V", "PackCurrent": "A", "ChargeAmps": "A", "EnergyRemaining": "kWh",
}

#: the chosen fields' values and the Location points, in one pass over the window
SERIES_SQL = """
SELECT field, epoch_ms(created_at) AS t,
       coalesce(value_double, CAST(value_long AS DOUBLE), CAST(CAST(value_bool AS INTEGER) AS DOUBLE)) AS v,
       latitude, longitude
FROM telemetry
WHERE (list_contains($fields, field)
       AND coalesce(value_double, CAST(value_long AS DOUBLE), CAST(CAST(value_bool AS INTEGER) AS DOUBLE)) IS NOT NULL)
   OR (field = 'Location' AND latitude IS NOT NULL AND longitude IS NOT NULL)
QUALIFY row_number() OVER (PARTITION BY field ORDER BY created_at DESC) <= $points
"""
VINS_SQL = """
SELECT vin, max(created_at) AS last_seen, count(DISTINCT event_id) AS events FROM _raw_telemetry
GROUP BY vin ORDER BY last_seen DESC LIMIT $limit
"""


def _read(console: Console, q: Query, vin: str | None, fields: list[str]) -> dict[str, Any]:
    if vin is None:
        con = console.lake.connect(q.window(""), ("telemetry",))
        return {"vins": con.execute(VINS_SQL, {"limit": q.limit}).fetchall()}
    con = console.lake.connect(q.window(vin), ("telemetry", "vehicle_state"))
    read_once(con)  # two questions of the same window: read and deduplicate it once
    latest = con.execute(LATEST_SQL, {"vin": vin}).fetchall()
    series: dict[str, list[tuple[int, float]]] = {f: [] for f in fields}
    route: list[tuple[int, float, float]] = []
    for field, t, v, lat, lon in con.execute(SERIES_SQL, {"fields": fields, "points": POINTS}).fetchall():
        if field in series and v is not None:
            series[field].append((int(t), float(v)))
        if field == "Location" and lat is not None:
            route.append((int(t), float(lat), float(lon)))
    numeric = [field for field, value, _ in latest if _is_number(value)]
    return {"latest": latest, "series": series, "route": route, "numeric": numeric}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return text in ("true", "false")
    return True


def routes(console: Console) -> list[Route]:
    async def page(request: Request) -> Response:
        q = query_of(request, console.settings)
        fields_text = request.query_params.get("fields") or DEFAULT_FIELDS
        fields = [f.strip() for f in fields_text.replace(" ", ",").split(",") if f.strip()][:8]
        ctx: dict[str, Any] = {"title": TITLE, "q": q, "form": {**q.form, "fields": ",".join(fields)},
                               "vin": q.vin, "units": UNITS, "missing": None, "lake": console.lake.where()}
        try:
            data, ms = await console.blocking(lambda: _read(console, q, q.vin, fields))
        except StoreMissingError as exc:
            return console.render(request, "vehicle.html", {**ctx, "missing": str(exc)})
        ctx.update(data, lake_ms=ms)
        if q.vin is not None:
            ctx["charts"] = [svg.time_series(f, data["series"][f], unit=UNITS.get(f, ""), since_ms=q.since_ms,
                                             until_ms=q.until_ms) for f in fields]
            ctx["route_svg"] = svg.route(data["route"])
            ctx["capped"] = [f for f in fields if len(data["series"][f]) >= POINTS]
            ctx["alerts"], ctx["alerts_missing"] = await _active_alerts(console, q.vin)
        return console.render(request, "vehicle.html", ctx)

    return [Route(PATH, page, methods=["GET"])]


async def _active_alerts(console: Console, vin: str) -> tuple[list[dict[str, Any]], str | None]:
    try:
        store = AlertStore(console.alerts.engine())
    except StoreMissingError as exc:
        return [], str(exc)
    rows, _ = await console.blocking(lambda: store.active(vin=vin))
    return rows, None
