"""Structured JSON logs on stderr, one object a line, for every service."""

from __future__ import annotations

import logging
import os
import sys

from pythonjsonlogger.json import JsonFormatter

_configured = False


def configure_logging(level: str | None = None) -> None:
    """Send the root logger's records to stderr as JSON (once per process)."""
    global _configured
    if _configured:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                       rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("CITYSCORE_LOG_LEVEL", "INFO"))
    # The Kafka client is chatty at INFO about every reconnect.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    _configured = True
