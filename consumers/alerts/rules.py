"""Which alerts notify: an ordered list of rules, first match wins, no match means no notification.

A rules file (``--rules FILE``, YAML or JSON) is either a list of rules or ``{"rules": [...]}``::

    rules:
      - name: "APP_w*"            # glob on the alert name (fnmatch, case-sensitive)
        audiences: [Customer]     # matches when the alert has any of these audiences
        notify: true
      - name_regex: "^BMS_[a-z]"  # regular expression (re.search) on the alert name
        vins: [LRW3F7EK4NC700000] # only these vehicles
        sinks: [http]             # deliver to these sinks only (default: all configured)
      - name: "*"                 # everything else: stay quiet
        notify: false

Every key is optional; a rule with no condition matches every alert. Without a file the default
is one rule: notify every alert whose audiences include ``Customer``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consumers.errors import RulesError

__all__ = ["DEFAULT_RULES", "Rule", "RulesError", "Ruleset", "load_rules"]

_KEYS = {"name", "name_regex", "audiences", "vins", "notify", "sinks"}
SINK_NAMES = ("http", "kafka", "log")




@dataclass(frozen=True, slots=True)
class Rule:
    name: str | None = None
    name_regex: re.Pattern[str] | None = None
    audiences: frozenset[str] | None = None
    vins: frozenset[str] | None = None
    notify: bool = True
    sinks: tuple[str, ...] | None = None

    def matches(self, name: str, audiences: Iterable[str], vin: str | None) -> bool:
        if self.name is not None and not fnmatch.fnmatchcase(name, self.name):
            return False
        if self.name_regex is not None and not self.name_regex.search(name):
            return False
        if self.audiences is not None and not self.audiences.intersection(audiences):
            return False
        return self.vins is None or vin in self.vins

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Rule:
        if not isinstance(d, dict):
            raise RulesError(f"{where}: a rule must be a mapping, got {type(d).__name__}")
        unknown = set(d) - _KEYS
        if unknown:
            raise RulesError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(_KEYS))})")
        regex = None
        if d.get("name_regex") is not None:
            try:
                regex = re.compile(str(d["name_regex"]))
            except re.error as exc:
                raise RulesError(f"{where}: bad name_regex: {exc}") from None
        sinks = _str_list(d, "sinks", where)
        if sinks is not None:
            bad = [s for s in sinks if s not in SINK_NAMES]
            if bad:
                raise RulesError(f"{where}: unknown sink(s) {', '.join(bad)} (known: {', '.join(SINK_NAMES)})")
        notify = d.get("notify", True)
        if not isinstance(notify, bool):
            raise RulesError(f"{where}: notify must be true or false")
        audiences = _str_list(d, "audiences", where)
        vins = _str_list(d, "vins", where)
        return cls(
            name=str(d["name"]) if d.get("name") is not None else None,
            name_regex=regex,
            audiences=frozenset(audiences) if audiences is not None else None,
            vins=frozenset(vins) if vins is not None else None,
            notify=notify,
            sinks=tuple(sinks) if sinks is not None else None,
        )


def _str_list(d: dict[str, Any], key: str, where: str) -> list[str] | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise RulesError(f"{where}: {key} must be a string or a list of strings")
    return list(v)


@dataclass(frozen=True, slots=True)
class Ruleset:
    rules: tuple[Rule, ...]

    def decide(self, name: str, audiences: Sequence[str], vin: str | None) -> Rule | None:
        """The first rule matching the alert when it says notify, else None."""
        for rule in self.rules:
            if rule.matches(name, audiences, vin):
                return rule if rule.notify else None
        return None


DEFAULT_RULES = Ruleset((Rule(audiences=frozenset({"Customer"})),))


def parse_rules(doc: Any, source: str = "rules") -> Ruleset:
    items = doc.get("rules") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise RulesError(f"{source}: expected a list of rules or a mapping with a 'rules' list")
    return Ruleset(tuple(Rule.from_dict(r, f"{source}: rule {i + 1}") for i, r in enumerate(items)))


def load_rules(path: str | Path | None) -> Ruleset:
    """Rules from a YAML or JSON file (by extension; YAML otherwise); the default without a path."""
    if path is None or str(path) == "":
        return DEFAULT_RULES
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"cannot read rules file {p}: {exc}") from None
    if p.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RulesError(f"{p}: invalid JSON: {exc}") from None
    else:
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RulesError(f"{p}: invalid YAML: {exc}") from None
    return parse_rules(doc, str(p))
