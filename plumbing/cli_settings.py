"""Bridge between argparse sub-commands and pydantic-settings classes.

Every settings field becomes a ``--flag`` (underscores become dashes) and stays an environment
variable with the ``TPIPE_`` prefix; a flag given on the command line wins over the environment,
which wins over the default. Sub-commands therefore declare their options once, as a settings class.

The help reads like hand-written help: the metavar names what the value is (``--catalog-uri URI``,
``--drain-timeout-s SECONDS``, ``--catalog-property KEY=VALUE``), choices are listed, defaults are
shown as a user would type them (``var/spool``, ``30``, ``on``), and secrets never show a value.
A field may set its own metavar or default text with ``json_schema_extra={"metavar": ...,
"default_text": ...}``. (pydantic-settings' own CLI source was measured against this and shows
``--kafka-sasl-password SecretStr``, ``list[str]`` and ``default factory: list``; see
docs/internal-contracts.md.)
"""

from __future__ import annotations

import argparse
import re
import types
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, TypeVar

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

__all__ = ["add_settings_arguments", "env_name", "flag_name", "settings_from_args"]

S = TypeVar("S", bound=BaseSettings)

_DEST_PREFIX = "cfg__"
ENV_PREFIX = "TPIPE_"

# name suffix -> metavar, first match wins (names are the field names, underscores)
_SUFFIX_METAVARS: tuple[tuple[str, str], ...] = (
    ("_ms", "MS"), ("_s", "SECONDS"), ("_days", "DAYS"), ("_bytes", "BYTES"), ("port", "PORT"),
    ("_url", "URL"), ("_uri", "URI"), ("_dir", "DIR"), ("file", "FILE"), ("host", "HOST"), ("addr", "ADDR"),
)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the scalar annotation, is_list) with ``X | None`` and ``Annotated[...]`` peeled off."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _unwrap(args[0])
    if origin in (list, tuple, set, frozenset):
        inner, _ = _unwrap(args[0]) if args else (str, False)
        return inner, True
    return annotation, False


def _metavar(name: str, annotation: Any, extra: Mapping[str, Any]) -> str | None:
    if "metavar" in extra:
        return str(extra["metavar"])
    if typing.get_origin(annotation) is typing.Literal:
        return None  # argparse shows the choices
    for suffix, metavar in _SUFFIX_METAVARS:
        if name.endswith(suffix):
            return metavar
    if annotation in (int, float):
        return "N"
    return name.rsplit("_", 1)[-1].upper()


def _shown(value: Any) -> str | None:
    """A default as a user would type it; None when there is nothing to show."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in value) if value else None
    return str(value)


def _default_text(field: FieldInfo, secret: bool, extra: Mapping[str, Any]) -> str:
    if secret:
        return "a secret: prefer the environment variable, flags show in `ps`"
    if "default_text" in extra:
        return f"default {extra['default_text']}"
    if field.is_required():
        return "required"
    shown = _shown(field.get_default(call_default_factory=True))
    return "unset by default" if shown is None else f"default {shown}"


def _help(field: FieldInfo, env: str, secret: bool, extra: Mapping[str, Any], is_list: bool) -> str:
    desc = field.description or ""
    if desc.endswith(".") and not desc.endswith(".."):
        desc = desc[:-1]
    parts = [f"env {env}", _default_text(field, secret, extra)]
    if is_list:
        parts.append("repeatable")
    tail = "; ".join(parts)
    # argparse expands %-sequences in help
    return (f"{desc} ({tail})" if desc else tail).replace("%", "%%")


def _group_title(owner: type[BaseSettings]) -> str:
    title = getattr(owner, "cli_group", None)
    if isinstance(title, str) and title:
        return title
    words = re.findall(r"[A-Z][a-z]*|[a-z]+", owner.__name__.removesuffix("Settings"))
    return (" ".join(words).lower() or "settings") + " options"


def _owner(cls: type[BaseSettings], name: str) -> type[BaseSettings]:
    """The most basic settings class that declares ``name`` (so shared options stay together)."""
    for klass in reversed(cls.__mro__):
        if isinstance(klass, type) and issubclass(klass, BaseSettings) and name in klass.__dict__.get("__annotations__", {}):
            return klass
    return cls


def add_settings_arguments(
    parser: argparse.ArgumentParser,
    cls: type[BaseSettings],
    *,
    skip: set[str] | None = None,
    rename: Mapping[str, str] | None = None,
) -> None:
    """Add one ``--flag`` per field of ``cls`` (all default to None: unset means 'env or default').

    ``rename`` gives a field another flag (``{"alerts_db_url": "db-url"}`` -> ``--db-url``); its
    environment variable keeps the field's name. Fields are grouped by the settings class that
    declares them (its ``cli_group`` is the group's title)."""
    groups: dict[type[BaseSettings], argparse._ArgumentGroup] = {}
    for name, field in cls.model_fields.items():
        if skip and name in skip:
            continue
        owner = _owner(cls, name)
        group = groups.get(owner)
        if group is None:
            group = groups[owner] = parser.add_argument_group(_group_title(owner))
        flag = "--" + rename[name] if rename and name in rename else flag_name(name)
        scalar, is_list = _unwrap(field.annotation)
        secret = scalar is SecretStr
        raw_extra = field.json_schema_extra
        extra: Mapping[str, Any] = raw_extra if isinstance(raw_extra, Mapping) else {}
        help_text = _help(field, env_name(name), secret, extra, is_list)
        dest = _DEST_PREFIX + name
        if scalar is bool and not is_list:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": help_text}
        if typing.get_origin(scalar) is typing.Literal:
            choices = typing.get_args(scalar)
            kwargs["choices"] = choices
            kwargs["type"] = type(choices[0]) if choices else str
        else:
            kwargs["type"] = scalar if scalar in (int, float) else str
            kwargs["metavar"] = _metavar(name, scalar, extra)
        if is_list:
            kwargs["action"] = "append"
        group.add_argument(flag, **kwargs)


def settings_from_args(cls: type[S], args: argparse.Namespace, **extra: Any) -> S:
    """Build ``cls`` from the environment, overridden by the flags that were given."""
    overrides = {
        key[len(_DEST_PREFIX):]: value
        for key, value in vars(args).items()
        if key.startswith(_DEST_PREFIX) and value is not None and key[len(_DEST_PREFIX):] in cls.model_fields
    }
    overrides.update(extra)
    return cls(**overrides)
