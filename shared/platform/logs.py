"""Logs on stderr for every service: JSON, one object a line, for machines; plain lines for a person.

JSON is what a log collector reads, so it is the default wherever no terminal is attached
(a container, a service manager, a file, a pipe) and in production, whose deployment files
say so explicitly. Someone running a service or `make demo` in a terminal reads plain
lines instead: time, level, logger, message, then the record's fields as name=value.
CITYSCORE_LOG_FORMAT (json, plain or auto, the default) overrides the choice.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("json", "plain", "auto")

_configured = False


class LogFormatError(ValueError):
    """CITYSCORE_LOG_FORMAT holds something other than json, plain or auto."""


def log_format(setting: str | None, stream: TextIO) -> str:
    """'json' or 'plain' for logs written to `stream`: the setting when it names one, else by
    whether a person is watching (a terminal) or a program is (anything else)."""
    chosen = (setting or "auto").strip().lower()
    if chosen not in LOG_FORMATS:
        raise LogFormatError(f"CITYSCORE_LOG_FORMAT: {setting!r} is not one of {', '.join(LOG_FORMATS)}")
    if chosen != "auto":
        return chosen
    try:
        return "plain" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no isatty, or a closed stream: not a person
        return "json"


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(RESERVED_ATTRS) | {"taskName"}


class PlainFormatter(logging.Formatter):
    """One line a record for a person: '14:03:07 INFO cityscore.notifier: alert fired metric=… score=0.81'.

    The fields passed with `extra=` follow as name=value (quoted when they hold a space), except
    one the message already says in full, so a Slack post's text is not printed twice.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = []
        for name, value in record.__dict__.items():
            if name in _STANDARD or name.startswith("_") or value is None:
                continue
            text = str(value)
            if len(text) > 3 and text in record.message:
                continue
            fields.append(f"{name}={text!r}" if (" " in text or not text) else f"{name}={text}")
        return " ".join([line, *fields])


def configure_logging(level: str | None = None) -> None:
    """Send the root logger's records to stderr, as JSON or plain lines (once per process)."""
    global _configured
    if _configured:
        return
    handler = logging.StreamHandler(sys.stderr)
    if log_format(os.environ.get("CITYSCORE_LOG_FORMAT"), sys.stderr) == "plain":
        handler.setFormatter(PlainFormatter())
    else:
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("CITYSCORE_LOG_LEVEL", "INFO"))
    # The Kafka client is chatty at INFO about every reconnect.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    _configured = True
