"""Structured (JSON) logging. Privacy rule: log ids, counts, reasons and timings, never field values.

`extra={...}` fields are emitted as JSON keys. Nothing here inspects values for PII, so call sites pass
only ids and numbers; reasons from `records.py` are written to name fields, not quote them.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return orjson.dumps(out, default=str).decode()


class RateLimit(logging.Filter):
    """Pass at most one record per key (librdkafka's facility, else the message) every `seconds`; the next
    one that passes says how many were dropped meanwhile (`suppressed`).

    Why: during a broker outage librdkafka reports every reconnect attempt (~22 lines a second measured),
    which buries everything else and fills disks; the first line and a count say the same."""

    def __init__(self, seconds: float = 5.0) -> None:
        super().__init__()
        self.seconds = seconds
        self._state: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        key = f"{record.levelno}:{args[0] if args else record.msg}"
        now = time.monotonic()
        last, dropped = self._state.get(key, (-1e18, 0))
        if now - last < self.seconds:
            self._state[key] = (last, dropped + 1)
            return False
        self._state[key] = (now, 0)
        if dropped:
            record.suppressed = dropped
        return True


def kafka_logger() -> logging.Logger:
    """The logger librdkafka's own lines go to (client property `logger`): JSON like every other line,
    rate-limited per facility, instead of raw `%3|...|FAIL|...` lines on stderr."""
    logger = logging.getLogger("dedup.kafka")
    if not any(isinstance(f, RateLimit) for f in logger.filters):
        logger.addFilter(RateLimit())
    return logger


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
