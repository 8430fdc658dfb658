"""The scorer's own settings (its consumer and its read API), from environment variables, on top of
the common ones (shared/platform/settings.py)."""

from __future__ import annotations

from pydantic import Field

from shared.platform.settings import Settings


class ScorerSettings(Settings):
    scorer_group: str = Field("cityscore-scorer", alias="SCORER_GROUP", description="Kafka consumer group")
    batch_max: int = Field(20000, alias="SCORER_BATCH_MAX", ge=1, description="Events folded per transaction, at most")
    batch_wait_s: float = Field(0.5, alias="SCORER_BATCH_WAIT", gt=0,
                                description="Seconds a batch waits to fill before it is folded")
    # A waited commit that fails is safe (the batch is in the database; the offsets are kept and
    # committed when the loop next idles), so it need not hold the loop, or a stop, for kafka-python's
    # 30 s request timeout while the broker is away.
    commit_timeout_s: float = Field(10.0, alias="SCORER_COMMIT_TIMEOUT", gt=0,
                                    description="Seconds a waited offset commit may take before it is kept for later")
    scorer_check_crcs: bool = Field(False, alias="SCORER_CHECK_CRCS",
                                    description="Verify record CRCs in the consumer (slow in kafka-python)")
    # The notifier's posts (alert threads, staff notes, Slack user ids, channels) are internal;
    # only a laptop without Slack (the demo) shows them, on a page of their own.
    scorer_show_slack_posts: bool = Field(False, alias="SCORER_SHOW_SLACK_POSTS",
                                          description="Serve /slack-posts, the notifier's recent posts (laptop only)")
    # Who acknowledged and owns an alert, and who owns an action, are Slack user ids or staff names:
    # internal, like the posts. The department pages say whether an alert is owned; they say who
    # only where the city serves them to its staff (an intranet) and sets this.
    scorer_show_owners: bool = Field(False, alias="SCORER_SHOW_OWNERS",
                                     description="The department and cabinet pages and their JSON name who owns "
                                                 "each alert and action (staff only)")
    scorer_read_timeout_s: float = Field(5.0, alias="SCORER_READ_TIMEOUT", gt=0,
                                         description="Seconds a score computed on request may take before a 503")
    # The same variable as the notifier's (deploy/k8s/configmap.yaml gives both services one value):
    # the board's "projected" scores are those of the windows the notifier alerts on.
    alert_windows: str = Field("week", alias="NOTIFIER_ALERT_WINDOWS",
                               description="Comma-separated windows whose projected score the board shows")

    @property
    def projected_windows(self) -> tuple[str, ...]:
        """NOTIFIER_ALERT_WINDOWS as window names, read as the notifier reads it."""
        return tuple(w.strip() for w in self.alert_windows.split(",") if w.strip())
