"""gunicorn settings for the HTTP services (ingest; later the scorer's read API).

    gunicorn -c deploy/gunicorn.conf.py services.ingest.wsgi:app

Each worker makes its own Kafka producer after the fork. Threads suit the work: a
request mostly waits for Kafka's acknowledgement.
"""

import os
import tempfile

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = None  # the app logs each request as JSON with its request id
errorlog = "-"
# gunicorn 25+ opens a control socket at one path per user (~/.gunicorn/gunicorn.ctl):
# two instances on one machine (ingest and the scores API, a demo beside the tests)
# would fight over it, and nothing here uses it.
control_socket_disable = True

# Prometheus counters summed over workers (prometheus_client's multiprocess mode).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cityscore-prom-")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
