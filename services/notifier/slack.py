"""Adapters to Slack: the Web API through slack-sdk, or the log when no token is set.

Two WebClients on purpose. Calls that are safe to repeat (chat.update, reads) retry
429 (honouring Retry-After), 500/503 and dropped connections inside slack-sdk. Calls
that create something (chat.postMessage, files.completeUploadExternal) retry only
429, which Slack answers before doing anything: after a 500 or a timeout the message
may exist, so the outbox decides, after looking in the channel, whether to send again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient

log = logging.getLogger("cityscore.notifier.slack")

METADATA_EVENT = "cityscore_outbox"

# Slack errors that retrying will not fix.
PERMANENT_ERRORS = {
    "channel_not_found", "user_not_found", "not_in_channel", "is_archived", "invalid_auth", "not_authed", "account_inactive",
    "token_revoked", "token_expired", "missing_scope", "invalid_blocks", "invalid_blocks_format", "msg_too_long",
    "no_text", "invalid_arguments", "invalid_metadata_format", "invalid_metadata_schema", "message_not_found",
    "cant_update_message", "edit_window_closed", "thread_not_found", "restricted_action", "file_not_found",
    "too_many_attachments", "invalid_arg_name", "invalid_form_data", "invalid_post_type", "unknown_method",
}


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """Wait out a 429 inside slack-sdk only when Retry-After is short.

    A longer wait is left to the outbox (the message's next attempt time), so one send
    attempt never outlives the lease that keeps other senders off the message.
    """

    def __init__(self, max_retry_count: int, max_wait_s: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_s = max_wait_s

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        value = next((v for k, v in response.headers.items() if k.lower() == "retry-after"), None)
        if isinstance(value, list):
            value = value[0] if value else None
        try:
            return float(value or 1) <= self.max_wait_s
        except ValueError:
            return False


class DeliveryError(Exception):
    """A send that did not go through."""

    def __init__(self, error: str, *, maybe_delivered: bool, permanent: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.maybe_delivered = maybe_delivered  # Slack may have acted on it (500, timeout)
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True)
class Posted:
    channel: str
    ts: str


class SlackGateway(Protocol):
    def post(self, channel: str, message: dict, *, key: str, thread_ts: str | None = None) -> Posted: ...

    def update(self, channel: str, ts: str, message: dict) -> None: ...

    def find_post(self, channel: str, key: str, *, thread_ts: str | None, since: datetime) -> Posted | None: ...

    def upload(self, channel: str, thread_ts: str | None, filename: str, title: str, data: bytes,
               comment: str) -> Posted: ...

    def find_upload(self, channel: str, thread_ts: str | None, filename: str, *, since: datetime) -> Posted | None: ...

    def open_view(self, trigger_id: str, view: dict) -> None: ...

    def respond(self, response_url: str, message: dict) -> None: ...

    def ready(self) -> bool: ...

    def auth_problem(self) -> str | None: ...


def _classify(exc: Exception) -> DeliveryError:
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = response.status_code
        if status == 429:
            retry_after = response.headers.get("Retry-After") or response.headers.get("retry-after")
            if isinstance(retry_after, list):
                retry_after = retry_after[0]
            return DeliveryError("ratelimited", maybe_delivered=False, retry_after=float(retry_after or 1))
        if status >= 500:
            return DeliveryError(f"HTTP {status}", maybe_delivered=True)
        error = response.get("error") if isinstance(response.data, dict) else f"HTTP {status}"
        return DeliveryError(str(error), maybe_delivered=False, permanent=error in PERMANENT_ERRORS)
    if isinstance(exc, SlackRequestError):
        return DeliveryError(str(exc), maybe_delivered=True)
    # timeouts, refused or dropped connections: Slack may or may not have acted
    return DeliveryError(f"{type(exc).__name__}: {exc}", maybe_delivered=True)


class WebApiGateway:
    def __init__(self, token: str, base_url: str, timeout_s: int = 15, rate_limit_retries: int = 3,
                 max_rate_limit_wait_s: float = 30.0) -> None:
        rate_limits = BoundedRateLimitRetryHandler(rate_limit_retries, max_rate_limit_wait_s)
        self.creating = WebClient(token=token, base_url=base_url, timeout=timeout_s, retry_handlers=[rate_limits])
        self.repeatable = WebClient(token=token, base_url=base_url, timeout=timeout_s, retry_handlers=[
            BoundedRateLimitRetryHandler(rate_limit_retries, max_rate_limit_wait_s),
            ServerErrorRetryHandler(max_retry_count=2), ConnectionErrorRetryHandler(max_retry_count=2)])
        # Readiness probes wait for it: one short try, no retries (the next probe asks again).
        self.probe = WebClient(token=token, base_url=base_url, timeout=min(timeout_s, 5), retry_handlers=[])
        self.timeout_s = timeout_s
        self._ids: dict[str, str] = {}

    def post(self, channel: str, message: dict, *, key: str, thread_ts: str | None = None) -> Posted:
        try:
            response = self.creating.chat_postMessage(
                channel=channel, text=message.get("text", ""), blocks=message.get("blocks"), thread_ts=thread_ts,
                unfurl_links=False, metadata={"event_type": METADATA_EVENT, "event_payload": {"key": key}})
        except Exception as exc:  # noqa: BLE001 - every failure is classified for the outbox
            raise _classify(exc) from exc
        return Posted(response["channel"], response["ts"])

    def update(self, channel: str, ts: str, message: dict) -> None:
        try:
            self.repeatable.chat_update(channel=channel, ts=ts, text=message.get("text", ""),
                                        blocks=message.get("blocks"))
        except Exception as exc:  # noqa: BLE001
            error = _classify(exc)
            error.maybe_delivered = False  # an update repeated is harmless
            raise error from exc

    def channel_id(self, channel: str) -> str:
        """A channel's id: chat.postMessage takes '#name', conversations.history only the id."""
        if not channel.startswith("#"):
            return channel
        if channel not in self._ids:
            cursor = None
            while True:
                try:
                    response = self.repeatable.conversations_list(
                        types="public_channel,private_channel", exclude_archived=True, limit=1000, cursor=cursor)
                except Exception as exc:  # noqa: BLE001
                    error = _classify(exc)
                    error.maybe_delivered, error.permanent = True, False
                    raise error from exc
                for found in response.get("channels", []):
                    self._ids[f"#{found['name']}"] = found["id"]
                cursor = (response.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        if channel not in self._ids:
            # No such channel: the post cannot have gone out; the next attempt gets Slack's own answer.
            raise DeliveryError("channel_not_found", maybe_delivered=False)
        return self._ids[channel]

    def _messages(self, channel: str, thread_ts: str | None, since: datetime, pages: int = 20):
        channel = self.channel_id(channel)
        cursor = None
        for _ in range(pages):
            try:
                if thread_ts:
                    response = self.repeatable.conversations_replies(
                        channel=channel, ts=thread_ts, include_all_metadata=True, limit=200, cursor=cursor)
                else:
                    response = self.repeatable.conversations_history(
                        channel=channel, oldest=f"{since.timestamp() - 120:.6f}", include_all_metadata=True,
                        limit=200, cursor=cursor)
            except Exception as exc:  # noqa: BLE001
                error = _classify(exc)
                # we could not look: keep assuming it may be there, and look again later
                error.maybe_delivered, error.permanent = True, False
                raise error from exc
            yield from response.get("messages", [])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not response.get("has_more") or not cursor:
                return

    def find_post(self, channel: str, key: str, *, thread_ts: str | None, since: datetime) -> Posted | None:
        for message in self._messages(channel, thread_ts, since):
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == METADATA_EVENT and (metadata.get("event_payload") or {}).get("key") == key:
                return Posted(self.channel_id(channel), message["ts"])
        return None

    def upload(self, channel: str, thread_ts: str | None, filename: str, title: str, data: bytes,
               comment: str) -> Posted:
        try:
            response = self.creating.files_upload_v2(channel=channel, thread_ts=thread_ts, filename=filename,
                                                     title=title, content=data, initial_comment=comment)
        except Exception as exc:  # noqa: BLE001
            raise _classify(exc) from exc
        return Posted(channel, response["file"]["id"])

    def find_upload(self, channel: str, thread_ts: str | None, filename: str, *, since: datetime) -> Posted | None:
        # Files carry no metadata: their name holds the outbox key's date and channel.
        for message in self._messages(channel, thread_ts, since):
            for file in message.get("files") or []:
                if file.get("name") == filename:
                    return Posted(self.channel_id(channel), file["id"])
        return None

    def open_view(self, trigger_id: str, view: dict) -> None:
        self.repeatable.views_open(trigger_id=trigger_id, view=view)

    def respond(self, response_url: str, message: dict) -> None:
        """Answer an interaction through its response_url (an ephemeral reply, for one): no token, no
        retries and a short timeout, since the person who clicked is waiting and may click again."""
        try:
            response = WebhookClient(response_url, timeout=min(self.timeout_s, 5)).send_dict(message)
        except Exception as exc:  # noqa: BLE001 - every failure is classified
            raise _classify(exc) from exc
        if response.status_code != 200:
            # Slack answers e.g. 404 expired_url (after 30 minutes) or used_url (after five answers).
            raise DeliveryError(f"HTTP {response.status_code}: {response.body}"[:300], maybe_delivered=False,
                                permanent=response.status_code < 500)

    def ready(self) -> bool:
        return self.auth_problem() is None

    def auth_problem(self) -> str | None:
        """None when Slack accepts the token (auth.test); otherwise why not, e.g. 'token_revoked'."""
        try:
            response = self.probe.auth_test()
        except Exception as exc:  # noqa: BLE001 - every failure is a reason not to be ready
            return _classify(exc).error
        return None if response.get("ok") else str(response.get("error") or "auth.test answered not ok")


class LogGateway:
    """No Slack token: every message goes to the log (and stays in the outbox)."""

    channel = "log"

    def post(self, channel: str, message: dict, *, key: str, thread_ts: str | None = None) -> Posted:
        # The text in the message itself: a person at a terminal reads the post in one plain line.
        log.info("slack message to %s (not sent: no SLACK_BOT_TOKEN): %s", channel, message.get("text"),
                 extra={"key": key, "channel": channel, "thread_ts": thread_ts, "text": message.get("text")})
        return Posted(channel, f"{time.time():.6f}")

    def update(self, channel: str, ts: str, message: dict) -> None:
        log.info("slack update in %s (not sent: no SLACK_BOT_TOKEN): %s", channel, message.get("text"),
                 extra={"channel": channel, "ts": ts, "text": message.get("text")})

    def find_post(self, channel: str, key: str, *, thread_ts: str | None, since: datetime) -> Posted | None:
        return None

    def upload(self, channel: str, thread_ts: str | None, filename: str, title: str, data: bytes,
               comment: str) -> Posted:
        log.info("slack file (not sent: no SLACK_BOT_TOKEN)", extra={"channel": channel, "file": filename,
                                                                     "bytes": len(data)})
        return Posted(channel, filename)

    def find_upload(self, channel: str, thread_ts: str | None, filename: str, *, since: datetime) -> Posted | None:
        return None

    def open_view(self, trigger_id: str, view: dict) -> None:
        log.info("slack view (not opened: no SLACK_BOT_TOKEN)")

    def respond(self, response_url: str, message: dict) -> None:
        log.info("slack answer to an interaction (not sent: no SLACK_BOT_TOKEN): %s", message.get("text"),
                 extra={"text": message.get("text")})

    def ready(self) -> bool:
        return True

    def auth_problem(self) -> str | None:
        return None  # no token: nothing to authenticate


def make_gateway(token: str | None, base_url: str, timeout_s: int = 15, rate_limit_retries: int = 3) -> SlackGateway:
    if not token:
        return LogGateway()
    return WebApiGateway(token, base_url, timeout_s, rate_limit_retries)
