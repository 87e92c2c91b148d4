"""A small threaded forward proxy for tests, on a free loopback port.

It forwards ``http://`` requests in absolute form and tunnels ``CONNECT host:port`` for
``https://``, recording every target it was asked for (``.targets``) and every connection it
accepted (``.connections``); with ``credentials=(user, password)`` it demands Basic proxy
authentication and answers 407 without it.
"""

import base64
import http.client
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: "TestProxy"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with self.proxy.lock:
            self.proxy.connections += 1

    def _authorised(self) -> bool:
        if self.proxy.credentials is None:
            return True
        user, password = self.proxy.credentials
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if self.headers.get("Proxy-Authorization") == expected:
            return True
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="test"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_CONNECT(self):  # noqa: N802
        self.proxy.record("CONNECT", self.path)
        if not self._authorised():
            return
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        sockets = [self.connection, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 10)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.connection else self.connection).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()

    def _forward(self):
        self.proxy.record(self.command, self.path)
        if not self._authorised():
            return
        target = urlsplit(self.path)
        if target.scheme != "http" or not target.hostname:
            self.send_error(400, "absolute http:// URL expected")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        path = target.path or "/"
        if target.query:
            path += "?" + target.query
        upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10)
        try:
            upstream.request(self.command, path, body=body, headers=headers)
            response = upstream.getresponse()
            content = response.read()
        except OSError:
            self.send_error(502)
            return
        finally:
            upstream.close()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP | {"content-length"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward  # noqa: N815


class TestProxy:
    """``with TestProxy() as proxy:`` — ``proxy.url`` (``http://127.0.0.1:port``, with the
    credentials in it when set), ``proxy.targets`` (``[(method, target)]``)."""

    __test__ = False  # not a pytest test class

    def __init__(self, *, credentials: tuple[str, str] | None = None):
        self.credentials = credentials
        self.lock = threading.Lock()
        self.targets: list[tuple[str, str]] = []
        self.connections = 0
        handler = type("ProxyHandler", (_Handler,), {"proxy": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def record(self, method: str, target: str) -> None:
        with self.lock:
            self.targets.append((method, target))

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        if self.credentials:
            user, password = self.credentials
            return f"http://{user}:{password}@{self.address}"
        return f"http://{self.address}"

    def start(self) -> "TestProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "TestProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
