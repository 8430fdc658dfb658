"""The notifier's own settings, from environment variables, with defaults for a laptop.

With no SLACK_BOT_TOKEN every message is written to the log and the outbox table
only, so the whole notifier runs without a Slack workspace.
"""

from __future__ import annotations

from datetime import time, timedelta

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_quiet_hours(value: str) -> tuple[time, time] | None:
    """'20:00-07:30' -> (20:00, 07:30); '' or 'off' -> None."""
    value = value.strip()
    if value.lower() in ("", "off", "none"):
        return None
    start, _, end = value.partition("-")
    try:
        return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    except ValueError:
        raise ValueError(f"quiet hours {value!r}: write them HH:MM-HH:MM, e.g. 20:00-07:30") from None


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    # Slack
    slack_bot_token: str | None = Field(None, alias="SLACK_BOT_TOKEN",
                                        description="Bot token (xoxb-…); unset: messages go to the log and the outbox")
    slack_signing_secret: str | None = Field(None, alias="SLACK_SIGNING_SECRET",
                                             description="Verifies requests from Slack (buttons, /cityscore)")
    slack_base_url: str = Field("https://slack.com/api/", alias="SLACK_BASE_URL")
    slack_timeout_s: int = Field(15, alias="SLACK_TIMEOUT", ge=1)
    slack_rate_limit_retries: int = Field(3, alias="SLACK_RATE_LIMIT_RETRIES", ge=0,
                                          description="429s waited out (Retry-After) inside one send attempt")
    slack_team_id: str | None = Field(None, alias="SLACK_TEAM_ID",
                                      description="The city's Slack workspace (T0…): requests from any other are "
                                                  "refused; unset: any workspace the app is installed in")
    slack_max_body_bytes: int = Field(64 * 1024, alias="SLACK_MAX_BODY_BYTES", ge=1024,
                                      description="Larger requests to /slack/ get 413 before they are read "
                                                  "(Slack's own are a few KiB)")

    # where messages go
    mayor_channel: str = Field("#cityscore-mayor", alias="NOTIFIER_MAYOR_CHANNEL",
                               description="The mayor's office channel: daily board and weekly recap")
    default_channel: str = Field("#cityscore-follow-up", alias="NOTIFIER_DEFAULT_CHANNEL",
                                 description="Follow-up alerts of departments the routing file does not name")
    routing_file: str | None = Field(None, alias="NOTIFIER_ROUTING",
                                     description="YAML/JSON: department -> channel and owners' Slack ids")
    public_board_url: str = Field("http://127.0.0.1:8001/", alias="NOTIFIER_PUBLIC_BOARD_URL")

    # schedule (local time of the catalog's time zone)
    board_time: time = Field(time(8, 30), alias="NOTIFIER_BOARD_TIME")
    recap_day: str = Field("mon", alias="NOTIFIER_RECAP_DAY")
    recap_time: time = Field(time(8, 35), alias="NOTIFIER_RECAP_TIME")
    department_digest: bool = Field(True, alias="NOTIFIER_DEPARTMENT_DIGEST",
                                    description="Post each department's weekly digest to its channel "
                                                "(services/notifier/department_digest.py)")
    department_digest_day: str = Field("mon", alias="NOTIFIER_DEPARTMENT_DIGEST_DAY")
    department_digest_time: time = Field(time(8, 45), alias="NOTIFIER_DEPARTMENT_DIGEST_TIME")
    chart_days: int = Field(90, alias="NOTIFIER_CHART_DAYS", ge=2)
    packets: bool = Field(True, alias="NOTIFIER_PACKETS",
                          description="Post each department's monthly review packet (PDF) to its channel "
                                      "(services/notifier/packets.py)")
    packet_workday: int = Field(1, alias="NOTIFIER_PACKET_WORKDAY", ge=1, le=10,
                                description="On this working day of the month (1: the first; the catalog's "
                                            "business days and holidays), the previous month's packet")
    packet_time: time = Field(time(8, 40), alias="NOTIFIER_PACKET_TIME")
    outbox_retention_days: int = Field(30, alias="NOTIFIER_OUTBOX_RETENTION_DAYS", ge=1,
                                       description="Charts (PNG) of uploads sent or ended longer ago are dropped "
                                                   "from the outbox, hourly; the rows and keys stay")

    # alert lifecycle
    alert_windows: str = Field("week", alias="NOTIFIER_ALERT_WINDOWS", description="Comma-separated windows")
    fire_after: int = Field(2, alias="NOTIFIER_FIRE_AFTER", ge=1,
                            description="Consecutive evaluations below 1 before an alert fires")
    resolve_after: int = Field(2, alias="NOTIFIER_RESOLVE_AFTER", ge=1,
                               description="Consecutive evaluations at or above 1 before it resolves")
    evaluate_every_s: int = Field(900, alias="NOTIFIER_EVALUATE_EVERY", ge=1,
                                  description="Re-evaluate unchanged scores this often (a steady score counts too)")
    feed_check_every_s: int = Field(900, alias="NOTIFIER_FEED_CHECK_EVERY", ge=60,
                                    description="Look for stale feeds (data alerts) this often, and on start")
    at_risk: bool = Field(True, alias="NOTIFIER_AT_RISK",
                          description="Early warnings: an at-risk alert when a case-fed metric's overdue cases "
                                      "would bring an alert window's score below 1 (false: none, open ones close)")
    at_risk_check_every_s: int = Field(900, alias="NOTIFIER_AT_RISK_CHECK_EVERY", ge=60,
                                       description="Look at the overdue backlogs this often (they grow with time "
                                                   "alone), besides each score change")
    repeat_interval_s: int = Field(4 * 3600, alias="NOTIFIER_REPEAT_INTERVAL", ge=60,
                                   description="Remind about an unacknowledged alert this often")
    quiet_hours: str = Field("20:00-07:30", alias="NOTIFIER_QUIET_HOURS",
                             description="Alerts and reminders wait for the morning ('off' to disable)")

    # delivery
    consumer_group: str = Field("cityscore-notifier", alias="NOTIFIER_CONSUMER_GROUP")
    kafka_session_timeout_ms: int = Field(45000, alias="NOTIFIER_KAFKA_SESSION_TIMEOUT_MS", ge=6000,
                                          description="How soon Kafka gives a dead notifier's partitions to the next")
    send_poll_s: float = Field(1.0, alias="NOTIFIER_SEND_POLL", gt=0)
    retry_base_s: float = Field(2.0, alias="NOTIFIER_RETRY_BASE", gt=0)
    retry_max_s: float = Field(300.0, alias="NOTIFIER_RETRY_MAX", gt=0)
    lease_s: float = Field(300.0, alias="NOTIFIER_LEASE", gt=0,
                           description="How long a send attempt owns a message before another may take it")
    http_host: str = Field("127.0.0.1", alias="NOTIFIER_HTTP_HOST")
    http_port: int = Field(8002, alias="NOTIFIER_HTTP_PORT")
    stall_after_s: float = Field(600.0, alias="NOTIFIER_STALL_AFTER", gt=0,
                                 description="/healthz answers 503 when the consumer or the sender has not come "
                                             "round for this long (seconds; keep it above NOTIFIER_LEASE)")
    slack_auth_check_s: float = Field(30.0, alias="NOTIFIER_SLACK_AUTH_CHECK_EVERY", gt=0,
                                      description="/readyz asks Slack's auth.test at most this often (seconds) "
                                                  "when SLACK_BOT_TOKEN is set")
    serve_slack: bool = Field(True, alias="NOTIFIER_SERVE_SLACK",
                              description="`notifier run` answers Slack's requests on its own HTTP port too "
                                          "(the laptop); false where gunicorn serves them (services.notifier.wsgi)")

    @field_validator("recap_day", "department_digest_day")
    @classmethod
    def _weekday(cls, value: str) -> str:
        value = value.strip().lower()[:3]
        if value not in WEEKDAYS:
            raise ValueError(f"give a day of the week, one of {', '.join(WEEKDAYS)}")
        return value

    @field_validator("alert_windows")
    @classmethod
    def _not_feed(cls, value: str) -> str:
        # "feed" is the window of the data alerts (lifecycle.FEED): a follow-up of a window so
        # named would share their one open alert per metric.
        if "feed" in (w.strip() for w in value.split(",")):
            raise ValueError("'feed' is the data alerts' own window: name the catalog's window otherwise")
        # "at-risk:W" is the window of W's at-risk alerts (lifecycle.AT_RISK): a follow-up of a
        # window so named would share their one open alert.
        if any(w.strip().startswith("at-risk:") for w in value.split(",")):
            raise ValueError("'at-risk:…' names the at-risk alerts' windows: name the catalog's window otherwise")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str) -> str:
        parse_quiet_hours(value)
        return value

    @property
    def windows(self) -> tuple[str, ...]:
        return tuple(w.strip() for w in self.alert_windows.split(",") if w.strip())

    @property
    def quiet(self) -> tuple[time, time] | None:
        return parse_quiet_hours(self.quiet_hours)

    @property
    def repeat_interval(self) -> timedelta:
        return timedelta(seconds=self.repeat_interval_s)
