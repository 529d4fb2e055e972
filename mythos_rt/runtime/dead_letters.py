"""Refused inbound bus messages: counted, logged (rate-limited) and kept in a bounded file.

One JSON object per line: ``time`` (ISO 8601 UTC), ``subject``, ``reason``, ``payload`` (the
first ``payload_max_bytes`` bytes, decoded with invalid bytes shown as ``\\xNN``),
``payload_bytes`` (the full length) and ``truncated``.  When the file would grow past
``max_bytes`` it is renamed to ``<name>.1`` (replacing the previous one) and a new file starts,
so the two files together never exceed twice the cap and the newest letters are kept.

Writes are synchronous: each is one small append on a local disk, invalid messages are rare, and
the file is capped, so a flood costs bounded disk and a few microseconds per message.  A write
that fails (disk full, permissions) is counted and logged, never raised: a dead letter must not
take the bridge down.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from mythos_rt.runtime.metrics import Metrics

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 << 20
DEFAULT_PAYLOAD_MAX_BYTES = 4096
DEFAULT_LOG_EVERY_S = 10.0


class DeadLetters:
    """Counter ``nats_invalid_messages``, a log line at most every ``log_every_s``, the file."""

    def __init__(
        self,
        path: Path | None,
        metrics: Metrics,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        payload_max_bytes: int = DEFAULT_PAYLOAD_MAX_BYTES,
        log_every_s: float = DEFAULT_LOG_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._metrics = metrics
        self._max_bytes = max_bytes
        self._payload_max_bytes = payload_max_bytes
        self._log_every_s = log_every_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._file: IO[bytes] | None = None
        self._size = 0
        self._next_log_at = float("-inf")
        self._unlogged = 0

    def record(self, subject: str, reason: str, payload: bytes) -> None:
        """Keep one refused message.  Never raises."""
        self._metrics.inc("nats_invalid_messages")
        self._unlogged += 1
        self._maybe_log(subject, reason)
        if self.path is not None:
            self._write(self._line(subject, reason, payload))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _maybe_log(self, subject: str, reason: str) -> None:
        now = self._clock()
        if now < self._next_log_at:
            return
        logger.warning(
            "refused %d invalid bus message(s); latest on %s: %s (kept in %s)",
            self._unlogged,
            subject,
            reason,
            self.path or "no file",
        )
        self._unlogged = 0
        self._next_log_at = now + self._log_every_s

    def _line(self, subject: str, reason: str, payload: bytes) -> bytes:
        kept = payload[: self._payload_max_bytes]
        letter = {
            "time": datetime.fromtimestamp(self._wall_clock(), UTC).isoformat(),
            "subject": subject,
            "reason": reason,
            "payload": kept.decode("utf-8", errors="backslashreplace"),
            "payload_bytes": len(payload),
            "truncated": len(kept) < len(payload),
        }
        return json.dumps(letter, ensure_ascii=True).encode("ascii") + b"\n"

    def _write(self, line: bytes) -> None:
        try:
            file = self._open(len(line))
            file.write(line)
            file.flush()
            self._size += len(line)
        except OSError as exc:
            self._metrics.inc("nats_dead_letter_write_errors")
            self.close()
            if self._unlogged == 0:  # the rate limit just let a line through: add the cause
                logger.warning("cannot write the dead-letter file %s: %s", self.path, exc)

    def _open(self, incoming: int) -> IO[bytes]:
        assert self.path is not None
        if self._file is not None and self._size + incoming > self._max_bytes:
            self.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
            self._size = self._file.tell()
            if self._size and self._size + incoming > self._max_bytes:
                return self._open(incoming)
        return self._file
