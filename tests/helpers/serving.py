"""A real HTTP server for an app under test: the one way the tests serve a Flask app on localhost."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from werkzeug.serving import make_server


@contextmanager
def served(app, name: str = "app-http", port: int = 0) -> Iterator[str]:
    """`app` on a threaded Werkzeug server on 127.0.0.1 (`port`; 0: any free one), served by a
    thread of its own: its base URL. Shut down and its port closed when the block ends."""
    http = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}"
    finally:
        http.shutdown()
        thread.join(10)
        http.server_close()
