"""The architecture, enforced (docs/internal-contracts.md draws it):

* ``schemas`` imports nothing of ours; ``plumbing`` only ``schemas``; ``localbroker`` only those two;
* ``ingest`` and ``consumers`` never import each other (nor ``tpipe`` or ``localbroker``);
* only ``tpipe`` (the composition root) imports both roles;

both in the source (every import statement, also inside functions) and at run time: the command
``tpipe consume telemetry`` loads no receiver module and ``tpipe serve`` no consumer module.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

PACKAGES = ("schemas", "plumbing", "localbroker", "ingest", "consumers", "tpipe")
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "plumbing": {"schemas"},
    "localbroker": {"plumbing", "schemas"},
    "ingest": {"plumbing", "schemas"},
    "consumers": {"plumbing", "schemas"},
    "tpipe": {"schemas", "plumbing", "localbroker", "ingest", "consumers"},
}
MAX_LINES = 400
CONSENTED_LONG = {"ingest/spool/log.py"}  # the spool log: one concept, kept whole (issue 14)


def _imports(path: Path) -> set[str]:
    """The top-level packages of ours that ``path`` imports (anywhere in the file)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES)
    return found


def _sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_the_layout_allows(package: str) -> None:
    bad = {}
    for path in _sources(package):
        extra = _imports(path) - ALLOWED[package] - {package}
        if extra:
            bad[str(path.relative_to(REPO))] = sorted(extra)
    assert not bad, f"imports across the layout's rules: {bad}"


def test_product_modules_stay_small() -> None:
    long = {
        str(p.relative_to(REPO)): n
        for pkg in PACKAGES
        for p in _sources(pkg)
        if (n := len(p.read_text().splitlines())) > MAX_LINES and str(p.relative_to(REPO)) not in CONSENTED_LONG
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_tolerance_of_missing_modules() -> None:
    """Every module of ours exists: no ``importlib`` loading that tolerates a missing one."""
    offenders = [str(p.relative_to(REPO)) for pkg in PACKAGES for p in _sources(pkg)
                 if "ModuleNotFoundError" in p.read_text() or "find_spec(" in p.read_text()]
    assert not offenders


_PROBE = """
import json, sys
from tpipe.cli import build_parser
argv = sys.argv[1:]
parser = build_parser(argv)
{load}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""


def _loaded(argv: list[str], load: str = "") -> set[str]:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(load=load), *argv], capture_output=True, text=True,
                         cwd=REPO, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    ("argv", "load"),
    [
        (["consume", "telemetry"], "from consumers.lake.worker import TelemetryWorker\nfrom consumers.runtime import run_worker"),
        (["consume", "alerts"], "from consumers.alerts.worker import AlertsWorker\nfrom consumers.runtime import run_worker"),
        (["consume", "credits"], "from consumers.credits.worker import CreditsWorker\nfrom consumers.runtime import run_worker"),
        (["lake", "sql", "SELECT 1"], "import consumers.lake.query, consumers.replay.lake_cli"),
        (["replay", "--dry-run"], "import consumers.replay.engine"),
    ],
)
def test_a_consumer_command_loads_no_receiver_code(argv: list[str], load: str) -> None:
    loaded = _loaded(argv, load)
    assert "consumers" in loaded and "ingest" not in loaded and "uvicorn" not in loaded, sorted(loaded)


def test_serve_loads_no_consumer_code() -> None:
    loaded = _loaded(["serve"], "import ingest.app, ingest.cli, ingest.forward.child")
    assert "ingest" in loaded and "consumers" not in loaded and "pyiceberg" not in loaded, sorted(loaded)
