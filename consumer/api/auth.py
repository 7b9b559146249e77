"""Bearer tokens for /v1: who may score and read (scope `read`) and who may change state (scope `write`).

Tokens live in a file (`api.tokens_file`; in Kubernetes a Secret mounted as a file), one per line:

    # scope  token                              label (optional, appears in logs instead of the token)
    read     3b9f0c1e6f4a4f0d9e1c2a7b5d8e6f10     crm-lookups
    write    a51d2c3e4f5061728394a5b6c7d8e9f0     erasure-job

Several tokens may be valid at once, so a token is rotated without downtime: add the new line, move the
clients, delete the old line. The file is re-read when its modification time or size changes (checked at
most once a second), which is how a mounted Secret changes. A file that becomes unreadable or invalid
keeps the last good set and logs why: a typo during a rotation must not lock every client out.

A presented token is hashed and compared with every known hash in constant time (`hmac.compare_digest`),
so neither its length nor which token matched leaks through timing. Tokens and their hashes are never
logged; errors name the line number only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon

from consumer.config import ConfigError

__all__ = ["Token", "TokenStore", "Authenticate", "parse_tokens", "required_scope", "MIN_TOKEN_CHARS"]

log = logging.getLogger("dedup.api")

SCOPES = ("read", "write")
#: 16 characters of a random hex/base64 string is >= 64 bits; shorter ones are guessable online.
MIN_TOKEN_CHARS = 16
_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Token:
    """One accepted token, kept only as its SHA-256."""

    digest: bytes
    scopes: frozenset[str]
    label: str


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def parse_tokens(text: str, source: str = "tokens file") -> list[Token]:
    """The tokens of a tokens file; ConfigError naming the line (never the token) for anything malformed."""
    out: list[Token] = []
    seen: set[bytes] = set()
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if len(parts) not in (2, 3):
            raise ConfigError(f"{source} line {n}: expected `<scope> <token> [<label>]`, got {len(parts)} words")
        scope, token = parts[0].lower(), parts[1]
        if scope not in SCOPES:
            raise ConfigError(f"{source} line {n}: scope must be read or write")
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{source} line {n}: a token needs at least {MIN_TOKEN_CHARS} characters "
                              "(e.g. `openssl rand -hex 32`)")
        digest = _digest(token)
        if digest in seen:
            raise ConfigError(f"{source} line {n}: the same token appears twice")
        seen.add(digest)
        scopes = frozenset(SCOPES) if scope == "write" else frozenset({"read"})  # write implies read
        out.append(Token(digest, scopes, parts[2] if len(parts) == 3 else f"line-{n}"))
    if not out:
        raise ConfigError(f"{source} holds no token: add lines `read <token>` / `write <token>`")
    return out


class TokenStore:
    """The current tokens of a file, re-read when it changes; `match` in constant time."""

    def __init__(self, path: str | Path, clock: Any = time.monotonic) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._tokens = self._read()  # the first read fails loudly: a service must not start without tokens
        self._checked = clock()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _read(self) -> list[Token]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"api.tokens_file {self.path}: cannot read it ({type(exc).__name__})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"api.tokens_file {self.path}: not UTF-8 text") from None
        return parse_tokens(text, f"api.tokens_file {self.path}")

    def tokens(self) -> list[Token]:
        """The tokens now; re-reads the file when its stamp changed (at most once a second)."""
        now = self._clock()
        with self._lock:
            if now - self._checked >= _RECHECK_SECONDS:
                self._checked = now
                stamp = self._stat()
                if stamp != self._stamp:
                    self._stamp = stamp
                    try:
                        self._tokens = self._read()
                        log.info("api tokens reloaded", extra={"tokens": len(self._tokens)})
                    except ConfigError as exc:
                        log.error("api tokens file unusable: keeping the previous tokens",
                                  extra={"error": str(exc)})
            return self._tokens

    def match(self, presented: str) -> Token | None:
        """The token equal to `presented`, comparing against every known one (no early exit)."""
        digest = _digest(presented)
        found = None
        for token in self.tokens():
            if hmac.compare_digest(token.digest, digest):
                found = token
        return found


#: Requests that only read: look-ups, and scoring (it computes an answer, it changes no state).
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_READ_POSTS = frozenset({"/v1/score"})


def required_scope(method: str, path: str) -> str:
    """`read` for look-ups and scoring; `write` for anything else under /v1 (writes and erasure)."""
    if method in _READ_METHODS or (method == "POST" and path in _READ_POSTS):
        return "read"
    return "write"


def _unauthorized(code: str, message: str) -> falcon.HTTPError:
    exc = falcon.HTTPError(falcon.HTTP_401, title=code, description=message,
                           headers={"WWW-Authenticate": 'Bearer realm="dedup-stream"'})
    exc.extra = {}  # type: ignore[attr-defined]
    return exc


class Authenticate:
    """Falcon middleware: /v1/* needs a bearer token with the request's scope (before routing, so an
    unauthenticated caller learns nothing, not even which ids exist). Probes, /metrics and
    /openapi.json stay open: they carry no record data."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store

    def process_request(self, req: falcon.Request, _resp: falcon.Response) -> None:
        if not req.path.startswith("/v1/"):
            return
        header = req.get_header("Authorization") or ""
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _unauthorized("unauthorized", "send `Authorization: Bearer <token>` (docs/security.md)")
        token = self.store.match(presented.strip())
        if token is None:
            log.warning("api request with an unknown token", extra={"path_template": _template(req.path)})
            raise _unauthorized("invalid_token", "this token is not accepted")
        scope = required_scope(req.method, req.path)
        if scope not in token.scopes:
            raise falcon.HTTPError(falcon.HTTP_403, title="forbidden",
                                   description=f"this token may not {scope}: {req.method} needs a `{scope}` token")
        req.context.token_label = token.label


def _template(path: str) -> str:
    """The first two path segments (e.g. /v1/records): ids in a path are data, kept out of logs."""
    return "/".join(path.split("/")[:3])


def authenticator(api: Any) -> Authenticate | None:
    """The middleware `api` settings ask for: None when auth is off (a warning), else one over the tokens
    file (ConfigError when it is missing or invalid: a service must not serve /v1 open by accident)."""
    if api.auth == "off":
        log.warning("api.auth is off: anyone who reaches the port may call /v1 (local use only; "
                    "docs/security.md)")
        return None
    if not api.tokens_file:
        raise ConfigError("the /v1 API needs tokens: set api.tokens_file (DEDUP_API__TOKENS_FILE; lines "
                          "`read|write <token>`, docs/security.md), or api.auth = \"off\" for local use "
                          "(`dedup serve --no-auth`)")
    return Authenticate(TokenStore(api.tokens_file))
