"""Logging set-up: the standard ``logging`` module, one line per event, JSON when configured.

JSON lines (python-json-logger) carry the message plus any ``extra={...}`` fields, for log shippers;
the text format is for people at a terminal.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import sqlalchemy.exc
from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """Blanks ``token=...`` query parameters (browsers pass WebSocket tokens there, and uvicorn logs
    request paths): a log line must never carry a usable credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = _TOKEN_IN_QUERY.sub(r"\1[redacted]", record.msg)
        return True


_FIELD_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def field_name(name: str | None) -> str | None:
    """``name`` as a log field: an input field's name comes from the client (an unknown key of a body
    or a frame is named in its error), so anything but a short plain name is logged as ``(unprintable)``
    rather than copied into the log."""
    if name is None or _FIELD_NAME.match(name):
        return name
    return "(unprintable)"


class HideSqlParameters(logging.Filter):
    """Drops the bound parameters from a logged SQLAlchemy error (its message lists them by default):
    they are the request's values (addresses, chat text, symptoms), which are never logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        seen: set[int] = set()
        while exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            if isinstance(exc, sqlalchemy.exc.StatementError):
                exc.hide_parameters = True
            exc = exc.__cause__ or exc.__context__
        return True


class TextFormatter(logging.Formatter):
    """The text line plus the record's ``extra`` fields as ``key=value`` pairs, still one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _RECORD_ATTRS)
        return f"{line} {extras}" if extras else line


def configure_logging(level: str = "INFO", fmt: str = "text", file: Path | None = None) -> None:
    """Route every logger (ours and uvicorn's) to stderr at ``level`` in ``fmt`` (``text`` or ``json``).

    ``file``: to that file instead (appended to), with only errors also on stderr (the demo keeps the
    terminal for its progress). Raises ``OSError`` when the file cannot be opened."""
    handlers: list[logging.Handler] = []
    if file is None:
        handlers.append(logging.StreamHandler(sys.stderr))
    else:
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
        errors = logging.StreamHandler(sys.stderr)
        errors.setLevel(logging.ERROR)
        handlers.append(errors)
    for handler in handlers:
        if fmt == "json":
            handler.setFormatter(
                JsonFormatter(
                    "%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"}
                )
            )
        else:
            handler.setFormatter(TextFormatter(TEXT_FORMAT))
        handler.addFilter(RedactTokens())
        handler.addFilter(HideSqlParameters())
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
