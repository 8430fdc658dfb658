"""A fake Slack Web API: a real HTTP server that slack-sdk reaches through `base_url`.

It answers the methods the notifier uses with Slack's response shapes (`ok`,
`channel`, `ts`, `message`, `messages`, `has_more`, `response_metadata`, …), keeps
channels, threads and files in memory, records every call, and can be told to answer
the next calls with 429 + Retry-After, 500, or to hang past the client's timeout
(after accepting the call, as when Slack posts a message but the answer is lost).
`revoke()` revokes the token, as a workspace admin would: every call with it then
gets `{"ok": false, "error": "token_revoked"}`, auth.test included.

It also stands for Slack's interaction webhooks: `response_url()` makes a URL on this server
as Slack puts one in each interaction payload (/actions/…), and what is posted to it is kept
in `responses` (ephemeral replies, for one), with Slack's answers: `ok`, `no_text`,
`invalid_blocks`, and `used_url` after five answers to one URL.

    with FakeSlack() as slack:
        client = WebClient(token=slack.token, base_url=slack.base_url)
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOKEN = "xoxb-fake-token"


@dataclass
class Call:
    method: str
    params: dict
    status: int
    fault: str | None
    at: float


@dataclass
class Fault:
    kind: str  # "429" | "500" | "hang"
    remaining: int
    methods: frozenset[str] | None
    retry_after: int = 1
    hang_s: float = 30.0


@dataclass
class FakeSlackState:
    channels: dict[str, list[dict]] = field(default_factory=dict)  # channel -> top-level messages, oldest first
    replies: dict[tuple[str, str], list[dict]] = field(default_factory=dict)  # (channel, thread ts) -> replies
    files: dict[str, dict] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    views: list[dict] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # "#name" -> channel id
    responses: list["Answered"] = field(default_factory=list)  # posts to response_urls, in order
    # Channels (or users, for a DM) Slack refuses to post to, with its error: a user id that is no one's.
    refused: dict[str, str] = field(default_factory=dict)


@dataclass
class Answered:
    """A message posted to an interaction's response_url (its path on this server, and the JSON)."""

    path: str
    message: dict


class FakeSlack:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.state = FakeSlackState()
        self.revoked: set[str] = set()
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/api/"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-slack", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "FakeSlack":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FakeSlack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------------

    def fail_next(self, count: int, kind: str, methods: set[str] | None = None, *, retry_after: int = 1,
                  hang_s: float = 30.0) -> None:
        """Answer the next `count` calls (of these methods) with 429, 500, or a hang after accepting."""
        assert kind in ("429", "500", "hang")
        with self._lock:
            self._faults.append(Fault(kind, count, frozenset(methods) if methods else None, retry_after, hang_s))

    # -- interaction webhooks ---------------------------------------------------------------------

    def response_url(self) -> str:
        """A fresh response_url, shaped as Slack's (https://hooks.slack.com/actions/T…/…/…), on this server."""
        return f"http://127.0.0.1:{self.port}/actions/T0FAKE/{next(self._ids)}/fakewebhooktoken"

    def answered(self, url: str) -> list[dict]:
        """The messages posted to one response_url, in order."""
        path = urlsplit(url).path
        with self._lock:
            return [answer.message for answer in self.state.responses if answer.path == path]

    def answers(self, url: str, count: int = 1, timeout_s: float = 15, settle_s: float = 0.5) -> list[dict]:
        """The messages posted to one response_url once `count` have come (the notifier answers a
        click after it, on a worker thread), and `settle_s` more seconds to see no more come."""
        from tests.helpers.waiting import wait_until

        wait_until(lambda: len(self.answered(url)) >= count, timeout_s, f"{count} answer(s) on {url}")
        time.sleep(settle_s)
        return self.answered(url)

    def _respond(self, path: str, body: bytes) -> tuple[int, str]:
        # Slack's answers to a response_url post: plain text, not the Web API's JSON.
        try:
            message = json.loads(body or b"null")
        except ValueError:
            return 400, "invalid_payload"
        if not isinstance(message, dict):
            return 400, "invalid_payload"
        with self._lock:
            if sum(1 for answer in self.state.responses if answer.path == path) >= 5:
                return 404, "used_url"  # Slack takes five answers per interaction
            if not message.get("text") and not message.get("blocks"):
                return 400, "no_text"
            if self._blocks_problem(message.get("blocks")):
                return 400, "invalid_blocks"
            self.state.responses.append(Answered(path, message))
        return 200, "ok"

    def revoke(self, token: str | None = None) -> None:
        """Revoke a token (the bot's by default): Slack then answers token_revoked to it."""
        with self._lock:
            self.revoked.add(token or self.token)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and (fault.methods is None or method in fault.methods):
                    fault.remaining -= 1
                    return fault
        return None

    # -- what tests read ---------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def messages(self, channel: str) -> list[dict]:
        with self._lock:
            return list(self.state.channels.get(self.state.names.get(channel, channel), []))

    def thread(self, channel: str, ts: str) -> list[dict]:
        with self._lock:
            return list(self.state.replies.get((channel, ts), []))

    def all_messages(self) -> list[dict]:
        """Every message in every channel and thread, each with its `channel`."""
        with self._lock:
            out = [dict(m, channel=c) for c, ms in self.state.channels.items() for m in ms]
            out += [dict(m, channel=c) for (c, _), ms in self.state.replies.items() for m in ms]
            return out

    def outbox_keys(self) -> list[str]:
        """The outbox key in each message's metadata (one entry per message: duplicates show twice)."""
        return [m["metadata"]["event_payload"]["key"] for m in self.all_messages()
                if m.get("metadata", {}).get("event_type") == "cityscore_outbox"]

    # -- the API -------------------------------------------------------------------------------

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _find(self, channel: str, ts: str) -> dict | None:
        for message in self.state.channels.get(channel, []):
            if message["ts"] == ts:
                return message
        for (c, _), replies in self.state.replies.items():
            if c == channel:
                for message in replies:
                    if message["ts"] == ts:
                        return message
        return None

    @staticmethod
    def _blocks_problem(blocks) -> str | None:
        """Slack refuses messages that break Block Kit's limits with `invalid_blocks`."""
        if not blocks:
            return None
        if len(blocks) > 50 or sum(1 for b in blocks if b.get("type") == "table") > 1:
            return "invalid_blocks"
        for block in blocks:
            if block.get("type") == "section" and len((block.get("text") or {}).get("text", "")) > 3000:
                return "invalid_blocks"
            if block.get("type") == "table" and (len(block.get("rows", [])) > 100
                                                 or any(len(r) > 20 for r in block.get("rows", []))):
                return "invalid_blocks"
        return None

    def _message(self, params: dict) -> dict:
        message = {"type": "message", "user": "U0BOT", "bot_id": "B0BOT", "app_id": "A0APP", "ts": self._next_ts(),
                   "text": params.get("text", "")}
        blocks = params.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if blocks:
            message["blocks"] = blocks
        metadata = params.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        if metadata:
            message["metadata"] = metadata
        return message

    def _store(self, channel: str, message: dict, thread_ts: str | None) -> dict | None:
        if thread_ts:
            parent = self._find(channel, thread_ts)
            if parent is None:
                return None
            message["thread_ts"] = thread_ts
            self.state.replies.setdefault((channel, thread_ts), []).append(message)
            parent["reply_count"] = parent.get("reply_count", 0) + 1
            parent.setdefault("thread_ts", thread_ts)
        else:
            self.state.channels.setdefault(channel, []).append(message)
        return message

    @staticmethod
    def _public(message: dict, with_metadata: bool) -> dict:
        out = dict(message)
        if not with_metadata:
            out.pop("metadata", None)
        return out

    def handle(self, method: str, params: dict) -> dict:
        with self._lock:
            return self._handle(method, params)

    def _handle(self, method: str, params: dict) -> dict:
        truthy = lambda v: str(v).lower() in ("1", "true")  # noqa: E731
        if method == "auth.test":
            return {"ok": True, "url": "https://fake.slack.test/", "team": "Fake City", "user": "cityscore",
                    "team_id": "T0FAKE", "user_id": "U0BOT", "bot_id": "B0BOT"}
        if method == "conversations.list":
            channels = [{"id": cid, "name": name.lstrip("#"), "is_channel": True, "is_private": False,
                         "is_archived": False} for name, cid in sorted(self.state.names.items())]
            channels += [{"id": cid, "name": cid.lower(), "is_channel": True, "is_private": False,
                          "is_archived": False} for cid in self.state.channels if cid not in self.state.names.values()]
            start = int(params.get("cursor") or 0)
            limit = int(params.get("limit") or 100)
            more = start + limit < len(channels)
            return {"ok": True, "channels": channels[start:start + limit],
                    "response_metadata": {"next_cursor": str(start + limit) if more else ""}}
        if method == "chat.postMessage":
            channel = params.get("channel")
            if not channel:
                return {"ok": False, "error": "channel_not_found"}
            if channel in self.state.refused:
                return {"ok": False, "error": self.state.refused[channel]}
            if channel.startswith("#"):  # Slack accepts a name and answers with the channel's id
                channel = self.state.names.setdefault(channel, f"C{next(self._ids):08d}")
            if not params.get("text") and not params.get("blocks"):
                return {"ok": False, "error": "no_text"}
            problem = self._blocks_problem(self._message(params).get("blocks"))
            if problem:
                return {"ok": False, "error": problem}
            message = self._store(channel, self._message(params), params.get("thread_ts"))
            if message is None:
                return {"ok": False, "error": "thread_not_found"}
            return {"ok": True, "channel": channel, "ts": message["ts"], "message": self._public(message, False)}
        if method == "chat.update":
            channel, ts = params.get("channel"), params.get("ts")
            message = self._find(channel, ts)
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            fresh = self._message(params)
            problem = self._blocks_problem(fresh.get("blocks"))
            if problem:
                return {"ok": False, "error": problem}
            message["text"] = fresh["text"]
            if "blocks" in fresh:
                message["blocks"] = fresh["blocks"]
            message["edited"] = {"user": "U0BOT", "ts": self._next_ts()}
            return {"ok": True, "channel": channel, "ts": ts, "text": message["text"],
                    "message": self._public(message, False)}
        if method == "conversations.history":
            channel = params.get("channel")
            if str(channel).startswith("#"):
                return {"ok": False, "error": "channel_not_found"}  # history wants the id
            if channel not in self.state.channels:
                return {"ok": True, "messages": [], "has_more": False, "response_metadata": {"next_cursor": ""}}
            oldest = float(params.get("oldest") or 0)
            found = [m for m in reversed(self.state.channels[channel]) if float(m["ts"]) > oldest]
            start = int(params.get("cursor") or 0)
            limit = min(int(params.get("limit") or 100), 999)
            page = found[start:start + limit]
            more = start + limit < len(found)
            return {"ok": True, "messages": [self._public(m, truthy(params.get("include_all_metadata")))
                                             for m in page],
                    "has_more": more, "response_metadata": {"next_cursor": str(start + limit) if more else ""}}
        if method == "conversations.replies":
            channel, ts = params.get("channel"), params.get("ts")
            parent = self._find(channel, ts)
            if parent is None:
                return {"ok": False, "error": "thread_not_found"}
            with_metadata = truthy(params.get("include_all_metadata"))
            thread = [parent] + self.state.replies.get((channel, ts), [])
            return {"ok": True, "messages": [self._public(m, with_metadata) for m in thread], "has_more": False,
                    "response_metadata": {"next_cursor": ""}}
        if method == "files.getUploadURLExternal":
            if not params.get("filename") or not params.get("length"):
                return {"ok": False, "error": "invalid_arguments"}
            file_id = f"F{next(self._ids):08d}"
            self.state.files[file_id] = {"id": file_id, "name": params["filename"], "title": params["filename"],
                                         "size": int(params["length"]), "completed": False}
            return {"ok": True, "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = params.get("files")
            files = json.loads(files) if isinstance(files, str) else files
            shared_files = []
            for entry in files or []:
                record = self.state.files.get(entry.get("id"))
                if record is None or record["id"] not in self.state.uploads:
                    return {"ok": False, "error": "file_not_found"}
                # The type from the name, as Slack does: the board's chart (PNG), the review packet (PDF).
                mimetype = "application/pdf" if record["name"].endswith(".pdf") else "image/png"
                record.update(completed=True, title=entry.get("title") or record["title"], mimetype=mimetype)
                shared_files.append(dict(record))
            channel = params.get("channel_id")
            if channel:
                message = self._message({"text": params.get("initial_comment") or ""})
                message["files"] = shared_files
                if self._store(channel, message, params.get("thread_ts")) is None:
                    return {"ok": False, "error": "thread_not_found"}
            return {"ok": True, "files": [{"id": f["id"], "title": f["title"]} for f in shared_files]}
        if method == "views.open":
            view = params.get("view")
            view = json.loads(view) if isinstance(view, str) else view
            if not params.get("trigger_id"):
                return {"ok": False, "error": "invalid_trigger_id"}
            stored = dict(view or {}, id=f"V{next(self._ids):08d}")
            self.state.views.append(stored)
            return {"ok": True, "view": stored}
        return {"ok": False, "error": "unknown_method"}

    def upload(self, file_id: str, data: bytes) -> bool:
        with self._lock:
            if file_id not in self.state.files:
                return False
            self.state.uploads[file_id] = data
            return True

    # -- HTTP --------------------------------------------------------------------------------

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json",
                      headers: dict | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a hang past its timeout)

            def do_GET(self) -> None:
                self._api()

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                if path.startswith("/upload/"):
                    length = int(self.headers.get("Content-Length") or 0)
                    ok = fake.upload(path.rsplit("/", 1)[1], self.rfile.read(length))
                    self._send(200 if ok else 404, f"OK - {length}".encode() if ok else b"not found", "text/plain")
                    return
                if path.startswith("/actions/"):
                    length = int(self.headers.get("Content-Length") or 0)
                    status, answer = fake._respond(path, self.rfile.read(length))
                    self._send(status, answer.encode(), "text/html")
                    return
                self._api()

            def _params(self) -> dict:
                split = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(split.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                kind = self.headers.get("Content-Type", "")
                if body and "json" in kind:
                    params.update(json.loads(body))
                elif body:
                    params.update({k: v[-1] for k, v in parse_qs(body.decode()).items()})
                return params

            def _api(self) -> None:
                path = urlsplit(self.path).path
                if not path.startswith("/api/"):
                    self._send(404, b"not found", "text/plain")
                    return
                method = path[len("/api/"):]
                params = self._params()
                auth = self.headers.get("Authorization", "")
                token = auth[7:] if auth.startswith("Bearer ") else params.get("token")
                fault = fake._take_fault(method)
                status, body, headers = 200, None, {}
                if fault is not None and fault.kind == "429":
                    status, headers = 429, {"Retry-After": str(fault.retry_after)}
                    body = {"ok": False, "error": "ratelimited"}
                elif fault is not None and fault.kind == "500":
                    status, body = 500, None
                elif token in fake.revoked:
                    body = {"ok": False, "error": "token_revoked"}
                elif token != fake.token:
                    body = {"ok": False, "error": "invalid_auth"}
                else:
                    body = fake.handle(method, params)
                with fake._lock:
                    fake.calls.append(Call(method, params, status, fault.kind if fault else None, time.time()))
                if fault is not None and fault.kind == "hang":
                    time.sleep(fault.hang_s)  # accepted, but the answer comes too late
                if status == 500:
                    self._send(500, b"Internal Server Error", "text/plain")
                    return
                payload = json.dumps(body).encode()
                self._send(status, payload, "application/json; charset=utf-8", headers)

        return Handler


__all__ = ["Answered", "Call", "FakeSlack", "TOKEN"]
