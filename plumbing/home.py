"""The state root: where the default stores live (``--home DIR`` / ``TPIPE_HOME``, default ``./var``).

Every default path of a store — the alerts and credits databases, the lake's catalog and warehouse —
is a path under the state root, made absolute when the settings are built, so a command prints the
full path it uses and a mistyped or relative path is visible at once. Set ``TPIPE_HOME`` (or
``--home``) once and every command finds the same stores from any working directory; without it the
root is ``./var`` of the current directory (what ``make run`` uses). An explicit URL or path
(``--db-url``, ``--catalog-uri``, ``--warehouse``) always wins over the root.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_HOME", "HomeSettings", "home_dir", "sqlite_url"]

DEFAULT_HOME = "var"


def home_dir(home: str | None) -> Path:
    """The state root as an absolute path (``home``, else ``./var``)."""
    return Path(home or DEFAULT_HOME).expanduser().absolute()


def sqlite_url(path: Path) -> str:
    """``sqlite:////absolute/path`` for a file."""
    return f"sqlite:///{path.absolute()}"


class HomeSettings(BaseSettings):
    """The state root option, shared by the settings of every command that has a default store."""

    model_config = SettingsConfigDict(env_prefix="TPIPE_", extra="ignore")
    cli_group: ClassVar[str] = "state"

    home: str | None = Field(
        None,
        description="state root: the default databases and lake live under it; set it to use the same "
                    "stores from any directory",
        json_schema_extra={"metavar": "DIR", "default_text": "./var"},
    )

    def home_path(self, *parts: str) -> Path:
        return home_dir(self.home).joinpath(*parts)
