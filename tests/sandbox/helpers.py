"""Small helpers for talking to a sandbox over its real socket."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.sandbox.fixtures import SANDBOX_TOKEN


def api_client(server, token: str | None = SANDBOX_TOKEN, **kwargs) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.api_url, headers=headers, timeout=10.0, **kwargs)


def all_pages(client: httpx.Client, path: str, params=None) -> list[dict]:
    """Follow ``next`` to the end; returns the pages."""
    pages = []
    response = client.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        if "next" not in page:
            return pages
        response = client.get(page["next"])


def first_repo(server, *, with_prs: bool = False, empty: bool = False):
    for repo in server.world.iter_repositories():
        if empty != (repo.mainbranch is None):
            continue
        if with_prs and not repo.pull_requests:
            continue
        return repo
    raise AssertionError("no such repository in the test world")


class Receiver:
    """A tiny HTTP server that records webhook deliveries; answers ``statuses`` in order, then
    200."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.deliveries: list[tuple[dict, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.deliveries.append((dict(self.headers.items()), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/hook"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def payloads(self, event: str | None = None) -> list[dict]:
        with self.lock:
            return [
                json.loads(body)
                for headers, body in self.deliveries
                if event is None or headers.get("X-Event-Key") == event
            ]
