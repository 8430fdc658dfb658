"""WSGI entry point for the scorer's read API: `gunicorn -c deploy/gunicorn.conf.py services.scorer.wsgi:app`."""

import gc

from shared.platform.logs import configure_logging

from .app import create_app

configure_logging()
app = create_app()

# Everything made so far (modules, the app, the catalog) lives as long as the worker: frozen,
# the garbage collector no longer walks it. A past board builds some 10,000 short-lived
# objects (day totals and their lists), enough to set off a full collection every 30 requests
# or so, which walked all of it: 35 ms more on those requests, the board's p99 (measured
# with bench/bench_past_board.py). Imported in each worker, after gunicorn's fork.
gc.collect()
gc.freeze()
