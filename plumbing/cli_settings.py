"""Bridge between argparse sub-commands and pydantic-settings classes.

Every settings field becomes a ``--flag`` (underscores become dashes) and stays an environment
variable with the ``TPIPE_`` prefix; a flag given on the command line wins over the environment,
which wins over the default. Sub-commands therefore declare their options once, as a settings class.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, TypeVar

from pydantic import SecretStr
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)

_DEST_PREFIX = "cfg__"


def _flag_type(annotation: Any) -> tuple[Any, bool, bool]:
    """(scalar type for argparse, is_list, is_bool)."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _flag_type(args[0])
    if origin in (list, tuple, set, frozenset):
        inner, _, _ = _flag_type(args[0]) if args else (str, False, False)
        return inner, True, False
    if origin is typing.Literal:
        return type(args[0]) if args else str, False, False
    if annotation is bool:
        return bool, False, True
    if annotation in (int, float, str):
        return annotation, False, False
    if annotation is SecretStr:
        return str, False, False
    return str, False, False


def add_settings_arguments(parser: argparse.ArgumentParser, cls: type[BaseSettings], *, skip: set[str] | None = None) -> None:
    """Add one ``--flag`` per field of ``cls`` (all default to None: unset means 'env or default')."""
    group = parser.add_argument_group(f"{cls.__name__} (also TPIPE_* environment variables)")
    for name, field in cls.model_fields.items():
        if skip and name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        scalar, is_list, is_bool = _flag_type(field.annotation)
        env = "TPIPE_" + name.upper()
        default = field.default if not isinstance(field.default, SecretStr) else "***"
        help_text = f"{field.description + '; ' if field.description else ''}env {env}; default {default!r}"
        dest = _DEST_PREFIX + name
        if is_bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif is_list:
            group.add_argument(flag, dest=dest, action="append", type=scalar, default=None, help=help_text + " (repeatable)")
        else:
            group.add_argument(flag, dest=dest, type=scalar, default=None, help=help_text)


def settings_from_args(cls: type[S], args: argparse.Namespace, **extra: Any) -> S:
    """Build ``cls`` from the environment, overridden by the flags that were given."""
    overrides = {
        key[len(_DEST_PREFIX):]: value
        for key, value in vars(args).items()
        if key.startswith(_DEST_PREFIX) and value is not None and key[len(_DEST_PREFIX):] in cls.model_fields
    }
    overrides.update(extra)
    return cls(**overrides)
