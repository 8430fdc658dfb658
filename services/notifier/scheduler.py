"""The notifier's schedule: APScheduler jobs kept in the database.

Jobs: the daily board (default 08:30 local), the weekly recap (default Monday), each
department's weekly digest (default Monday 08:45; NOTIFIER_DEPARTMENT_DIGEST=false turns it off), the
reminders, the reminders of follow-up actions due (every five minutes; each owner once, from the board's
time on the due day: actions.py), the re-evaluation of steady scores, the look for stale feeds (data alerts,
every NOTIFIER_FEED_CHECK_EVERY seconds and on start), the look at the overdue backlogs
(at-risk alerts, every NOTIFIER_AT_RISK_CHECK_EVERY seconds and on start), a catch-up every five minutes that
posts the board and recap if their time passed without them (no scores yet then), and
an hourly purge of the charts of uploads sent over NOTIFIER_OUTBOX_RETENTION_DAYS ago.
They live in the `notifier_jobs` table (SQLAlchemyJobStore), so a restart keeps each
job's next run time: a run missed while the notifier was down happens on start
(within the grace time), and one that happened is not repeated. The board and recap are idempotent by their
outbox keys besides, and `Notifier.catch_up()` queues them if a crash fell between
APScheduler moving a job's next run time and the job finishing.

With `timer=False` the scheduler has no thread of its own: whoever moves the clock
(a test with a clock it sets by hand) calls `run_due()`, which runs the same stored
jobs with the same triggers at the clock's time.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from shared.platform.clock import Clock
from shared.store.engine import utcnow

from . import outbox
from shared.store.tables.notifier import JOBS_TABLE
from .service import Notifier

log = logging.getLogger("cityscore.notifier.scheduler")

_notifier: Notifier | None = None  # the running notifier, for the stored jobs to call


def _current() -> Notifier:
    if _notifier is None:
        raise RuntimeError("no notifier is running in this process")
    return _notifier


# Stored jobs name their function by module path, so these are plain module functions.
def daily_board() -> None:
    _current().scheduled_board()


def weekly_recap() -> None:
    _current().scheduled_recap()


def reminders() -> None:
    _current().send_reminders()


def action_reminders() -> None:
    from .actions import FollowUpActions

    FollowUpActions(_current()).send_reminders()


def evaluate_steady() -> None:
    _current().evaluate_steady()


def check_feeds() -> None:
    _current().check_feeds()


def check_at_risk() -> None:
    _current().check_at_risk()


def catch_up() -> None:
    # Each due and not queued yet (a crash mid-job, a notifier down at its time): queued now; otherwise
    # nothing. Each on its own: one's failure is logged and stops none of the others.
    for name, job in (("board and recap", lambda: _current().catch_up()), ("department digests", department_digests),
                      ("monthly packets", monthly_packets)):
        try:
            job()
        except Exception:
            log.exception("catch-up failed", extra={"job": name})


def monthly_packets() -> None:
    from .packets import MonthlyPackets

    MonthlyPackets(_current()).post_due()


def department_digests() -> None:
    from .department_digest import DepartmentDigests

    DepartmentDigests(_current()).post_due()


def purge_outbox() -> None:
    # Outbox times are the machine's UTC (utcnow), not the notifier's clock.
    notifier = _current()
    days = notifier.settings.outbox_retention_days
    dropped = outbox.drop_file_data(notifier.engine, utcnow() - timedelta(days=days))
    if dropped:
        log.info("old charts dropped from the outbox", extra={"uploads": dropped, "retention_days": days})


class _ManualScheduler(BackgroundScheduler):
    """APScheduler without its timer thread: jobs run only through `NotifierScheduler.run_due()`."""

    def _main_loop(self) -> None:
        return


class NotifierScheduler:
    def __init__(self, notifier: Notifier, engine: Engine, clock: Clock, *, timer: bool = True) -> None:
        """`timer=False`: jobs run only when `run_due()` is called (the clock moves when told, not by itself)."""
        self.notifier = notifier
        self.clock = clock
        self.manual = not timer
        zone = notifier.catalog.zone
        self.scheduler = (_ManualScheduler if self.manual else BackgroundScheduler)(
            jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)},
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 6 * 3600},
            timezone=zone)
        settings = notifier.settings
        days = settings.recap_day
        start = clock.now()  # interval triggers count from the notifier's clock, not the machine's
        self.jobs = {
            "daily-board": (daily_board, CronTrigger(hour=settings.board_time.hour, minute=settings.board_time.minute,
                                                     timezone=zone)),
            "weekly-recap": (weekly_recap, CronTrigger(day_of_week=days, hour=settings.recap_time.hour,
                                                       minute=settings.recap_time.minute, timezone=zone)),
            "reminders": (reminders, IntervalTrigger(seconds=60, start_date=start, timezone=zone)),
            # Each department's review packet of the month before, on its working day (packets.py decides).
            "monthly-packets": (monthly_packets, CronTrigger(hour=settings.packet_time.hour,
                                                             minute=settings.packet_time.minute, timezone=zone)),
            # Follow-up actions due: each owner once, from the board's time on the due day.
            "action-reminders": (action_reminders, IntervalTrigger(seconds=300, start_date=start, timezone=zone)),
            # Each department's week in its channel (NOTIFIER_DEPARTMENT_DIGEST; department_digest.py decides).
            "department-digests": (department_digests, CronTrigger(
                day_of_week=settings.department_digest_day, hour=settings.department_digest_time.hour,
                minute=settings.department_digest_time.minute, timezone=zone)),
            # The board and recap again if their time passed without them (scores came late).
            "catch-up": (catch_up, IntervalTrigger(seconds=300, start_date=start, timezone=zone)),
            "evaluate-steady": (evaluate_steady, IntervalTrigger(seconds=max(60, settings.evaluate_every_s // 4),
                                                                 start_date=start, timezone=zone)),
            # Data alerts for stale feeds; an interval job runs on start too (its first run time is now).
            "check-feeds": (check_feeds, IntervalTrigger(seconds=settings.feed_check_every_s, start_date=start,
                                                         timezone=zone)),
            # Early warnings: a backlog grows with time alone, with no score change to say so.
            "check-at-risk": (check_at_risk, IntervalTrigger(seconds=settings.at_risk_check_every_s, start_date=start,
                                                             timezone=zone)),
            "purge-outbox": (purge_outbox, IntervalTrigger(seconds=3600, start_date=start, timezone=zone)),
        }

    def start(self) -> None:
        global _notifier
        _notifier = self.notifier
        self.scheduler.start()
        now = self.clock.now()
        for job_id, (func, trigger) in self.jobs.items():
            job = self.scheduler.get_job(job_id)
            if job is not None and str(job.trigger) == str(trigger):
                continue  # keep its stored next run time: a missed run still happens
            self.scheduler.add_job(func, trigger, id=job_id, name=job_id, replace_existing=True,
                                   next_run_time=trigger.get_next_fire_time(None, now))
            log.info("scheduled", extra={"job": job_id, "trigger": str(trigger)})

    def shutdown(self) -> None:
        global _notifier
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        _notifier = None

    def next_runs(self) -> dict[str, str | None]:
        return {job.id: job.next_run_time.isoformat() if job.next_run_time else None
                for job in self.scheduler.get_jobs()}

    def run_due(self) -> list[str]:
        """Run the jobs due at the clock's time, in this thread, as APScheduler would (manual clock)."""
        now = self.clock.now()
        store = self.scheduler._lookup_jobstore("default")
        ran = []
        for job in store.get_due_jobs(now):
            run_times = job._get_run_times(now)
            if not run_times:
                continue
            # Like APScheduler: the next run time is stored before the job runs.
            following = job.trigger.get_next_fire_time(run_times[-1], now)
            if following:
                job._modify(next_run_time=following)
                store.update_job(job)
            else:
                store.remove_job(job.id)
            job.func(*job.args, **job.kwargs)
            ran.append(job.id)
        return ran
