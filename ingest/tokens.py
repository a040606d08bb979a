"""Webhook tokens: held only as SHA-256 digests, compared in constant time, at most 10 active.

Sources: tokens given on the command line / environment (``--token``) and a tokens file managed by
``tpipe token new|list|revoke``. The file stores digests only; the receiver reloads it when it
changes (checked every second) or on SIGHUP, without a restart. The file is written 0600 (never
readable by others, whatever the umask), through a temporary file renamed over it.

A token the store accepts is registered with ``plumbing.logs.register_secret`` the first time it is
seen, so a token that exists only as a digest here (``tpipe token new``) is redacted from log lines
as a literal too, not only where a pattern recognises it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from ingest.errors import TokenError
from plumbing.logs import register_secret

MAX_ACTIVE_TOKENS = 10



def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(slots=True)
class TokenEntry:
    id: str
    digest_hex: str
    created_at: str
    label: str = ""
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class TokensFile:
    """The JSON file behind ``tpipe token``: ``{"tokens": [{id, digest, created_at, label, revoked_at}]}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[TokenEntry]:
        try:
            raw = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        return [
            TokenEntry(t["id"], t["digest"], t["created_at"], t.get("label", ""), t.get("revoked_at"))
            for t in raw.get("tokens", [])
        ]

    def save(self, entries: list[TokenEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "tokens": [
                {"id": e.id, "digest": e.digest_hex, "created_at": e.created_at, "label": e.label,
                 "revoked_at": e.revoked_at}
                for e in entries
            ]
        }
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # exactly 0600 before a byte is written (a leftover tmp may be looser)
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def new(self, label: str = "") -> tuple[str, TokenEntry]:
        entries = self.load()
        if sum(e.active for e in entries) >= MAX_ACTIVE_TOKENS:
            raise TokenError(f"{MAX_ACTIVE_TOKENS} tokens are already active; revoke one first")
        token = "tp_" + secrets.token_urlsafe(32)
        entry = TokenEntry(
            id="tok_" + secrets.token_hex(4),
            digest_hex=digest(token).hex(),
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            label=label,
        )
        self.save([*entries, entry])
        return token, entry

    def revoke(self, token_id: str) -> TokenEntry:
        entries = self.load()
        for e in entries:
            if e.id == token_id:
                if e.revoked_at is None:
                    e.revoked_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    self.save(entries)
                return e
        raise TokenError(f"no token with id {token_id!r}")


class TokenStore:
    """What the receiver checks requests against."""

    def __init__(self, static_tokens: list[str], tokens_file: Path | None = None) -> None:
        self._static = [digest(t) for t in static_tokens]
        self._file = TokensFile(tokens_file) if tokens_file else None
        self._file_stamp: tuple[int, int, int] | None = None
        self._digests: tuple[bytes, ...] = ()
        self._registered: set[bytes] = set()  # digests of accepted tokens already registered as secrets
        self.reload()

    def reload(self) -> bool:
        """Re-read the tokens file; returns True if the set of accepted tokens changed."""
        from_file: list[bytes] = []
        if self._file is not None:
            self._file_stamp = self._stamp()
            from_file = [bytes.fromhex(e.digest_hex) for e in self._file.load() if e.active]
        digests = tuple(dict.fromkeys([*self._static, *from_file]))
        if len(digests) > MAX_ACTIVE_TOKENS:
            raise TokenError(f"{len(digests)} active tokens configured; at most {MAX_ACTIVE_TOKENS} are allowed")
        changed = digests != self._digests
        self._digests = digests
        return changed

    def _stamp(self) -> tuple[int, int, int] | None:
        """(inode, size, mtime_ns): `tpipe token` replaces the file, so a change shows in the inode."""
        assert self._file is not None
        try:
            st = self._file.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def reload_if_changed(self) -> bool:
        if self._file is None:
            return False
        return self.reload() if self._stamp() != self._file_stamp else False

    @property
    def count(self) -> int:
        return len(self._digests)

    def check(self, token: str | None) -> bool:
        if not token:
            return False
        d = digest(token)
        ok = False
        for known in self._digests:  # compare against all, no early exit
            ok |= hmac.compare_digest(d, known)
        if ok and d not in self._registered:
            self._registered.add(d)
            register_secret(token)  # a tokens-file token is known here only now: redact it as a literal
        return ok
