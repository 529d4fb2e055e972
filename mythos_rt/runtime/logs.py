"""Operator log lines: the set-up (LOG_FORMAT text or json), escaping, and the event lines.

Event lines are one INFO line each, with structured fields::

    log_event(log, "login", player="Armitage", player_id=..., session=..., peer=..., instance=...)

In the text format that is ``... INFO mythos_rt.runtime.gate: login player=Armitage ...``; in
the JSON format one object per line with ``time``, ``level``, ``logger``, ``message``, ``event``
and every field as a key.  The lines are listed in docs/OPERATIONS.md ("Logs").

Client text never reaches a log line raw.  A field's value is truncated (MAX_FIELD_CHARS) and,
in the text format, its control characters, line and paragraph separators and backslashes are
written as escapes; the text formatter escapes every message again (without the backslashes),
so no message, whoever built it, can start a new line and forge an ERROR or a Traceback.  In the
JSON format the JSON encoding does the escaping.

Another transport (telnet, say) logs its own ``login`` and ``disconnect`` with the same event
names and fields, so one query covers every way in.

Admin actions (in-game ``kick``/``ban``/``wall``, the CLI's ``players ban|...``) are logged
through :func:`log_admin_action`, so they all read the same and can be found by one grep.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import math
import queue
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")
MAX_FIELD_CHARS = 200
MAX_MESSAGE_CHARS = 4000

admin_log = logging.getLogger("mythos_rt.admin")

# C0 controls (newline, carriage return, escape...), DEL, C1 controls (NEL U+0085 among them),
# and the Unicode line and paragraph separators: anything a terminal or a log viewer might take
# as the end of a line or a command.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROLS_AND_BACKSLASH = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_QUOTES = re.compile(r'[\s"=]')


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def truncate(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(+{len(text) - limit} chars)"


def escape(value: object, limit: int = MAX_FIELD_CHARS) -> str:
    """``value`` as text safe inside one log line: truncated, every control character and every
    backslash written as an escape (so an escape in the output is never ambiguous)."""
    return _CONTROLS_AND_BACKSLASH.sub(_escape_char, truncate(str(value), limit))


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A whole message made single-line: controls escaped, backslashes left (fields inside it
    were escaped already)."""
    return _CONTROLS.sub(_escape_char, truncate(text, limit))


def _render_value(value: object) -> str:
    text = escape(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace('"', '\\"') + '"'


def render_fields(fields: Mapping[str, object]) -> str:
    return " ".join(f"{key}={_render_value(value)}" for key, value in fields.items())


def _json_value(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    return truncate(str(value))


# Lines a client can cause at will, per server: refusals (each gate, each HTTP API), per window.
REFUSAL_LINES, REFUSAL_WINDOW_S = 100, 10.0
# client_error_report lines per socket.
REPORT_LINES, REPORT_WINDOW_S = 10, 60.0


class LineBudget:
    """At most ``lines`` lines per ``window_s`` for lines a client can cause at will (refused
    handshakes, error reports): a flood must not fill the disk or drown the other lines.  Those
    over budget are counted, and the next line that gets through says how many
    (``suppressed=N``).  ``now`` is passed in: the owner's trio clock."""

    __slots__ = ("_lines", "_suppressed", "_used", "_window_s", "_window_start")  # one a socket

    def __init__(self, lines: int, window_s: float) -> None:
        self._lines = lines
        self._window_s = window_s
        self._window_start = -math.inf
        self._used = 0
        self._suppressed = 0

    def take(self, now: float) -> int | None:
        """None: drop this line; otherwise how many were dropped since the last one."""
        if now - self._window_start >= self._window_s:
            self._window_start, self._used = now, 0
        if self._used >= self._lines:
            self._suppressed += 1
            return None
        self._used += 1
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed


def log_event(
    logger: logging.Logger,
    event: str,
    budget: tuple[LineBudget, float] | None = None,
    **fields: object,
) -> None:
    """One INFO line: ``event key=value ...``; the fields also travel as structured data.

    ``budget``: (the budget, the trio time now) for lines a client can cause at will.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    if budget is not None:
        suppressed = budget[0].take(budget[1])
        if suppressed is None:
            return
        if suppressed:
            fields["suppressed"] = suppressed
    message = f"{event} {render_fields(fields)}" if fields else event
    structured = {key: _json_value(value) for key, value in fields.items()}
    logger.info("%s", message, extra={"event": event, "fields": structured})


def log_admin_action(actor: str, action: str, target: str | None, detail: str = "") -> None:
    """One INFO line per admin action, on the ``mythos_rt.admin`` logger.

    ``actor``: the admin's name, or ``cli`` for the command line; ``action``: what was done
    (``kick``, ``ban``, ``unban``, ``wall``, ``delete``, ``rename``, ``admin``, ``shutdown``...);
    ``target``: the player acted on (None for ``wall``); ``detail``: a reason or the text sent.
    Every value is escaped like client text (an admin's reason is typed text too).
    """
    log_event(admin_log, "admin_action", actor=actor, action=action, target=target, detail=detail)


# --- set-up ------------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message>``, the message always on one line."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


# The keys every JSON line has; an event field of the same name must not replace them.
_CORE_KEYS = frozenset({"time", "level", "logger", "message", "event", "exc_info"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, then
    ``event`` and the structured fields of event lines, and ``exc_info`` with a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": truncate(record.getMessage(), MAX_MESSAGE_CHARS),
        }
        event = getattr(record, "event", None)
        if event is not None:
            entry["event"] = event
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            # A field named like a core key keeps its value under "field_<name>".
            entry.update((f"field_{k}" if k in _CORE_KEYS else k, v) for k, v in fields.items())
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        text = json.dumps(entry, ensure_ascii=False, default=str)
        # Valid JSON either way, but some viewers break lines at U+2028/U+2029.
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _iso_utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class LogSetupError(ValueError):
    """LOG_LEVEL or LOG_FORMAT holds a value the server does not know."""


class _Enqueue(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are (formatted there, not here).

    The stdlib's ``prepare`` would fold the traceback into the message, which the text format
    would then put on one line; here the traceback travels in ``exc_text`` instead.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        record.msg, record.args, record.exc_info = record.getMessage(), None, None
        return record


_TRACEBACKS = logging.Formatter()


def configure_logging(level_name: str, log_format: str = "text") -> None:
    """The root logger writes to stderr at ``level_name`` in ``log_format`` (text or json).

    Lines are formatted and written by a thread of their own: a write to stderr blocks the
    thread that makes it, and the event loop waiting for the GIL behind the store's worker
    threads after every such write cost 2-3 ms of CPU per login in ``scripts/bench_server.py``
    (one ``login`` line each).  The event loop only puts the record on a queue.  The thread is
    stopped, and what it holds written, when the process exits.
    """
    level = level_name.strip().upper()
    if level not in logging.getLevelNamesMapping():
        raise LogSetupError(f"unknown log level '{level_name}' (use DEBUG, INFO, WARNING or ERROR)")
    fmt = log_format.strip().lower()
    if fmt not in LOG_FORMATS:
        raise LogSetupError(f"unknown log format '{log_format}' (use text or json)")
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    enqueue = _Enqueue(records)
    # basicConfig does nothing in a process that already has handlers (pytest, an embedding
    # app): they are kept, and no thread is started.
    logging.basicConfig(level=level, handlers=[enqueue])
    if enqueue in logging.getLogger().handlers:
        listener = logging.handlers.QueueListener(records, writer)
        listener.start()
        atexit.register(listener.stop)
