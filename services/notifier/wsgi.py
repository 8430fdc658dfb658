"""WSGI entry point for Slack's requests to the notifier (buttons, the note form, /cityscore):

    gunicorn -c deploy/gunicorn.conf.py services.notifier.wsgi:app

Only the HTTP side: the consumer, the schedule and the outbox sender run in
`notifier run` (with NOTIFIER_SERVE_SLACK=false there). Requests only write the
database (the sender delivers what they queue) and open Slack's note form, so any
number of workers and replicas may serve them; a replayed request is recognised in
the database whichever of them gets it.
"""

from shared.platform.logs import configure_logging

from .app import create_app
from .main import build

configure_logging()
_runtime = build()
app = create_app(_runtime.notifier_settings, _runtime.notifier, _runtime.gateway, metrics=_runtime.metrics)
