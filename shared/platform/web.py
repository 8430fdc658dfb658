"""What the HTTP services share: JSON answers. (Their settings, catalog and engine: shared/platform/bootstrap.py.)"""

from __future__ import annotations

import orjson
from flask import Response


def json_response(status: int, body, headers: dict[str, str] | None = None) -> Response:
    response = Response(orjson.dumps(body), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
