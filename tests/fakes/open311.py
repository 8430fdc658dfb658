"""A fake Open311 GeoReport v2 endpoint: a real HTTP server (werkzeug, in a thread) for the importer's tests.

It answers `GET /open311/v2/requests.json` as the spec and the big cities do (city-data.md):
`start_date`/`end_date` filter on requested_datetime (both bounds included) and a span over
90 days is refused with HTTP 400; `status` filters open or closed; with `paging` the
`page`/`page_size` extension is honoured (page_size capped at 500, as Chicago does), without
it `page` is ignored and at most `limit` requests are answered (the spec's 1,000 by default).
Request times without an offset are local times in `zone` (a city writing them so).
`fail_next(n)` makes the next n calls answer HTTP 500. Every call is recorded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo

import orjson
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

PATH = "/open311/v2/requests.json"


def _instant(text: str, zone: tzinfo = timezone.utc) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)  # local time in the city's zone


@dataclass
class Call:
    params: dict[str, str]
    status: int
    ids: list[str] = field(default_factory=list)


class FakeOpen311:
    def __init__(self, requests: list[dict] | None = None, *, paging: bool = True, limit: int = 1000,
                 max_page_size: int = 500, zone: tzinfo = timezone.utc):
        self.requests: list[dict] = list(requests or [])
        self.paging = paging
        self.limit = limit
        self.max_page_size = max_page_size
        self.zone = zone  # of request times written without an offset
        self.calls: list[Call] = []
        self._failures = 0
        self._lock = threading.Lock()
        self._server = None

    # -- control ---------------------------------------------------------------------------

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._failures = count

    def replace(self, request: dict) -> None:
        """A request changed in the city's system (e.g. it was closed)."""
        with self._lock:
            self.requests = [request if r.get("service_request_id") == request["service_request_id"] else r
                             for r in self.requests]

    @property
    def refused_windows(self) -> list[Call]:
        return [call for call in self.calls if call.status == 400]

    def start(self) -> str:
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        threading.Thread(target=self._server.serve_forever, name="fake-open311", daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_port}/open311/v2"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    # -- the endpoint ----------------------------------------------------------------------

    def _app(self, environ, start_response):
        request = Request(environ)
        response = self._answer(request)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        params = dict(request.args)
        with self._lock:
            if request.path != PATH:
                return self._record(params, Response("not found", status=404))
            if self._failures:
                self._failures -= 1
                return self._record(params, Response("upstream database unavailable", status=500))
            try:
                start, end = _instant(params["start_date"]), _instant(params["end_date"])
            except (KeyError, ValueError):
                return self._error(params, "start_date and end_date are required, ISO 8601")
            if end - start > timedelta(days=90):
                return self._error(params, "the span between start_date and end_date may be at most 90 days")
            status = params.get("status")
            found = [r for r in self.requests if start <= _instant(r["requested_datetime"], self.zone) <= end
                     and (status is None or r.get("status") == status)]
            found.sort(key=lambda r: (r["requested_datetime"], r.get("service_request_id") or ""))
            if self.paging:
                size = min(int(params.get("page_size", 50)), self.max_page_size)
                page = int(params.get("page", 1))
                found = found[(page - 1) * size: page * size]
            else:
                found = found[: self.limit]
            call = Call(params, 200, [r.get("service_request_id") for r in found])
            self.calls.append(call)
            return Response(orjson.dumps(found), status=200, mimetype="application/json")

    def _record(self, params: dict, response: Response) -> Response:
        self.calls.append(Call(params, response.status_code))
        return response

    def _error(self, params: dict, description: str) -> Response:
        return self._record(params, Response(orjson.dumps([{"code": 400, "description": description}]), status=400,
                                             mimetype="application/json"))
