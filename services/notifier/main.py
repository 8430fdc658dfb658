"""The notifier's entry point: wire the adapters, then consume, schedule, send and serve.

`run(settings)` is what `cityscore notifier run` calls. One process runs four
things: the Kafka consumer of score changes (main thread), the APScheduler
scheduler, the outbox sender, and the HTTP server for Slack and operations.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from shared.core.catalog import Catalog
from shared.platform.bootstrap import bootstrap
from shared.platform.clock import Clock, SystemClock
from shared.platform.settings import Settings

from .app import NotifierMetrics, create_app
from .health import CachedCheck, Liveness
from .outbox import Sender
from .routing import Routing, load_routing
from .scheduler import NotifierScheduler
from .service import Notifier
from .settings import NotifierSettings
from .slack import SlackGateway, make_gateway

log = logging.getLogger("cityscore.notifier")


@dataclass
class Runtime:
    settings: Settings
    notifier_settings: NotifierSettings
    engine: Engine
    catalog: Catalog
    routing: Routing
    clock: Clock
    gateway: SlackGateway
    notifier: Notifier
    sender: Sender
    metrics: NotifierMetrics


def build(settings: Settings | None = None, notifier_settings: NotifierSettings | None = None, *,
          clock: Clock | None = None, engine: Engine | None = None, catalog: Catalog | None = None,
          gateway: SlackGateway | None = None) -> Runtime:
    """The notifier's parts wired from settings (tests pass their own clock or engine)."""
    settings, catalog, engine = bootstrap(settings=settings, catalog=catalog, engine=engine)
    notifier_settings = notifier_settings or NotifierSettings()
    clock = clock or SystemClock()
    routing = load_routing(notifier_settings.routing_file, catalog, notifier_settings.default_channel)
    gateway = gateway or make_gateway(notifier_settings.slack_bot_token, notifier_settings.slack_base_url,
                                      notifier_settings.slack_timeout_s, notifier_settings.slack_rate_limit_retries)
    notifier = Notifier(engine, catalog, notifier_settings, routing, clock)
    metrics = NotifierMetrics(notifier)
    sender = Sender(engine, gateway, city_now=clock.now, retry_base_s=notifier_settings.retry_base_s,
                    retry_max_s=notifier_settings.retry_max_s, lease_s=notifier_settings.lease_s,
                    on_result=metrics.delivered)
    notifier.on_enqueue = sender.wake
    if not notifier_settings.slack_bot_token:
        log.warning("SLACK_BOT_TOKEN is not set: Slack messages go to the log and the outbox table only")
    return Runtime(settings, notifier_settings, engine, catalog, routing, clock, gateway, notifier, sender, metrics)


def slack_checks(runtime: Runtime) -> dict[str, CachedCheck]:
    """Readiness asks Slack whether the bot token still works (auth.test; a revoked or
    expired token is not ready), at most every NOTIFIER_SLACK_AUTH_CHECK_EVERY seconds.
    Without a token messages go to the log: nothing to check."""
    if not runtime.notifier_settings.slack_bot_token:
        return {}
    return {"slack": CachedCheck(runtime.gateway.auth_problem, runtime.notifier_settings.slack_auth_check_s)}


def run(settings: Settings | None = None, notifier_settings: NotifierSettings | None = None, *,
        stop: threading.Event | None = None, clock: Clock | None = None) -> None:
    """Run the notifier until SIGTERM/SIGINT (or `stop` is set)."""
    from werkzeug.serving import make_server

    from shared.platform.kafka import broker_reachable, ensure_topics, kafka_security

    from .consumer import consume, make_consumer

    runtime = build(settings, notifier_settings, clock=clock)
    settings, ns = runtime.settings, runtime.notifier_settings
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())

    security = kafka_security(settings)
    ensure_topics(settings.kafka_bootstrap_servers, {settings.scores_topic: settings.topic_partitions},
                  security=security)
    # The sender and the consumer each run on a thread with a heartbeat; /healthz follows them.
    liveness = Liveness(ns.stall_after_s)
    sender_thread = liveness.start("sender", lambda beat: runtime.sender.run(stop, ns.send_poll_s, beat))
    scheduler = NotifierScheduler(runtime.notifier, runtime.engine, runtime.clock)
    scheduler.start()
    try:
        queued = runtime.notifier.catch_up()
        if queued:
            log.info("caught up on scheduled posts", extra={"keys": queued})
    except Exception:  # noqa: BLE001 - the scheduled job will try again
        log.exception("catching up on the schedule failed")

    # Werkzeug's server: the operations endpoints, and Slack's only where NOTIFIER_SERVE_SLACK
    # (the laptop); in production gunicorn serves those (services/notifier/wsgi.py).
    app = create_app(ns, runtime.notifier, runtime.gateway, metrics=runtime.metrics, slack_routes=ns.serve_slack,
                     checks={
        "kafka": lambda: broker_reachable(settings.kafka_bootstrap_servers, 2.0, security=security),
        "sender": sender_thread.is_alive,
        "scheduler": lambda: scheduler.scheduler.running,
        **slack_checks(runtime),
    }, liveness=liveness.problems)
    server = make_server(ns.http_host, ns.http_port, app, threaded=True)
    http_thread = threading.Thread(target=server.serve_forever, name="notifier-http", daemon=True)
    http_thread.start()
    log.info("notifier running", extra={"topic": settings.scores_topic, "group": ns.consumer_group,
                                        "http": f"{ns.http_host}:{server.server_port}",
                                        "jobs": scheduler.next_runs()})
    consumer = make_consumer(settings.kafka_bootstrap_servers, settings.scores_topic, ns.consumer_group,
                             ns.kafka_session_timeout_ms, settings.kafka_reconnect_backoff_max_ms, security=security)
    consumer_thread = liveness.start("consumer", lambda beat: consume(consumer, runtime.notifier, stop, beat=beat))
    try:
        # The main thread only waits for SIGTERM/SIGINT. A loop that ends or stalls leaves the
        # process up with /healthz answering 503 and naming it, for the liveness probe to act on.
        while not stop.wait(1.0):
            pass
    finally:
        stop.set()
        runtime.sender.wake()
        consumer_thread.join(timeout=30)  # out of its poll within half a second: then it may be closed
        consumer.close()
        scheduler.shutdown()
        server.shutdown()
        sender_thread.join(timeout=30)
        log.info("notifier stopped")
