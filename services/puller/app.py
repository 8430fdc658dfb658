"""The pull's health endpoints, for the container's health check and Kubernetes' probes."""

from __future__ import annotations

from flask import Flask

from shared.platform.web import json_response


def create_app(pull, alive) -> Flask:
    """`/healthz`: the pull's loop is running. `/readyz`: its last cycle succeeded (503 while it
    backs off after a failure of the endpoint or ingest, or before a first cycle is done)."""
    app = Flask("cityscore-pull")

    def status() -> dict:
        return {"cycles": pull.cycles, "failures_in_a_row": pull.failures,
                "last_success": pull.last_success.isoformat() if pull.last_success else None,
                "cursor": pull.cursor.as_dict() if pull.cursor else None}

    @app.get("/healthz")
    def healthz():
        return json_response(200 if alive() else 503, {"alive": alive(), **status()})

    @app.get("/readyz")
    def readyz():
        ready = pull.last_success is not None and pull.failures == 0
        return json_response(200 if ready else 503, {"ready": ready, **status()})

    return app
