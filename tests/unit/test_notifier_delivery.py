"""The outbox's delivery stages that talk only to Slack's gateway: dedup, send, and the backoff.

An in-memory gateway stands in for Slack (it keeps what it was sent, as the fake Slack
server does over HTTP); no database, no network.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from services.notifier.outbox.delivery import Claimed, Dedup, Send, backoff
from services.notifier.slack import Posted

SINCE = datetime(2026, 7, 24, 12, 0, tzinfo=timezone.utc)


class MemorySlack:
    """The SlackGateway protocol over lists: posts by outbox key, edits, files, and who asked what."""

    def __init__(self) -> None:
        self.posts: dict[str, Posted] = {}
        self.edits: list[tuple[str, str, dict]] = []
        self.files: dict[str, Posted] = {}
        self.calls: list[tuple] = []

    def post(self, channel, message, *, key, thread_ts=None):
        self.calls.append(("post", channel, key, thread_ts))
        self.posts[key] = Posted(channel, f"17000000{len(self.posts)}.0001")
        return self.posts[key]

    def update(self, channel, ts, message):
        self.calls.append(("update", channel, ts))
        self.edits.append((channel, ts, message))

    def find_post(self, channel, key, *, thread_ts, since):
        self.calls.append(("find_post", channel, key, thread_ts, since))
        return self.posts.get(key)

    def upload(self, channel, thread_ts, filename, title, data, comment):
        self.calls.append(("upload", channel, thread_ts, filename))
        self.files[filename] = Posted(channel, f"F{len(self.files)}")
        return self.files[filename]

    def find_upload(self, channel, thread_ts, filename, *, since):
        self.calls.append(("find_upload", channel, thread_ts, filename))
        return self.files.get(filename)


def claimed(kind: str = "post", key: str = "alert:pothole-on-time:week:1:post", *, maybe: bool = False,
            parent: tuple[str, str] | None = None, payload: dict | None = None) -> Claimed:
    return Claimed(1, key, kind, "C0PWD", payload or {"text": "Pothole on-time below target"}, None, 2, 1, maybe,
                   SINCE, *(parent or (None, None)))


def test_a_message_that_cannot_be_in_slack_yet_is_sent_without_looking():
    slack = MemorySlack()
    message = claimed()
    assert Dedup(slack)(message) is None and slack.calls == []
    posted = Send(slack)(message)
    assert slack.calls == [("post", "C0PWD", message.key, None)] and posted == slack.posts[message.key]


def test_a_message_an_earlier_attempt_may_have_posted_is_found_and_not_sent_again():
    slack = MemorySlack()
    first = Send(slack)(claimed())
    again = claimed(maybe=True)
    assert Dedup(slack)(again) == first
    assert [call[0] for call in slack.calls] == ["post", "find_post"]
    assert slack.calls[-1] == ("find_post", "C0PWD", again.key, None, SINCE)  # looked from the first attempt on
    # not found (the attempt never reached Slack): dedup gives nothing, and send posts it
    other = claimed(key="alert:shootings:week:1:post", maybe=True)
    assert Dedup(slack)(other) is None


def test_a_reply_is_looked_for_and_sent_in_its_parents_thread():
    slack = MemorySlack()
    reply = claimed(key="alert:pothole-on-time:week:1:reply:1", maybe=True, parent=("C0PWDID", "1700.1"))
    assert Dedup(slack)(reply) is None
    Send(slack)(reply)
    assert slack.calls == [("find_post", "C0PWDID", reply.key, "1700.1", SINCE),
                           ("post", "C0PWDID", reply.key, "1700.1")]


def test_an_edit_never_looks_and_goes_to_its_parent_message():
    slack = MemorySlack()
    edit = claimed("update", "alert:pothole-on-time:week:1:update", maybe=True, parent=("C0PWDID", "1700.1"),
                   payload={"text": "Resolved"})
    assert Dedup(slack)(edit) is None  # an edit repeated is harmless
    assert Send(slack)(edit) == Posted("C0PWDID", "1700.1")
    assert slack.calls == [("update", "C0PWDID", "1700.1")] and slack.edits[0][2] == {"text": "Resolved"}


def test_an_upload_is_found_by_its_file_name():
    slack = MemorySlack()
    chart = replace(claimed("upload", "board:C0MAYOR:2026-07-26:chart", parent=("C0MAYORID", "1700.2"),
                            payload={"filename": "cityscore-2026-07-26.png", "title": "t", "comment": "c"}),
                    file_data=b"\x89PNG")
    sent = Send(slack)(chart)
    assert Dedup(slack)(replace(chart, was_maybe_delivered=True)) == sent
    assert [call[0] for call in slack.calls] == ["upload", "find_upload"]


@pytest.mark.parametrize(("attempts", "expected"), [(1, 2.0), (2, 4.0), (3, 8.0), (8, 256.0), (9, 300.0),
                                                    (500, 300.0)])
def test_retries_back_off_doubling_up_to_the_most(attempts, expected):
    assert backoff(attempts, 2.0, 300.0) == expected


def test_the_backoff_is_jittered_and_never_shorter_than_slacks_retry_after():
    assert backoff(1, 2.0, 300.0, jitter=1.2) == pytest.approx(2.4)
    assert backoff(1, 2.0, 300.0, retry_after=30.0, jitter=0.8) == 30.0
    assert backoff(9, 2.0, 300.0, retry_after=30.0) == 300.0
