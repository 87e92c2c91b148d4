"""Runs a sandbox API on a real socket: ``SandboxServer(world).start()`` in a daemon thread.

Real HTTP (``ThreadingHTTPServer``, HTTP/1.1 keep-alive) so the product's own client, retries and
connection handling are exercised unchanged; ``stop()`` or the context manager shuts it down.
The Data Center sandbox (``kind="dc"``) serves HTTPS only, with a certificate from a private CA
it generates (``.ca_pem`` is what a client must trust).
"""

import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sandbox.routing import Request
from sandbox.world import World

logger = logging.getLogger(__name__)


def _api_class(kind: str) -> Any:
    if kind == "cloud":
        from sandbox.cloud.api import CloudApi

        return CloudApi
    if kind == "dc":
        from sandbox.datacenter.api import DataCenterApi

        return DataCenterApi
    raise ValueError(f"Unknown sandbox kind {kind!r} (known: cloud, dc)")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BitbucketSandbox/1.0"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls
    api: Any = None  # set on the per-server subclass

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET  # noqa: N815

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        host, port = self.server.server_address[:2]
        request = Request(
            method=self.command,
            path=unquote(parts.path),
            query=parse_qsl(parts.query, keep_blank_values=True),
            headers=self.headers,
            body=self._read_body(),
            client=self.client_address[0],
            host=self.headers.get("Host") or f"{host}:{port}",
        )
        response = self.api.handle(request)
        if response.drop:
            self.close_connection = True  # no status line at all: a dropped connection
            return
        payload = response.encode()
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("sandbox.request " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class _TlsServer(_Server):
    """TLS on each accepted connection; the handshake happens in the connection's own thread
    (on first read), so a client that stalls or refuses the certificate blocks nobody else."""

    ssl_context: ssl.SSLContext

    def get_request(self):
        sock, address = super().get_request()
        wrapped = self.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def handle_error(self, request, client_address) -> None:
        # A client that does not trust the CA closes the handshake: expected in tests.
        logger.debug("sandbox.connection_failed", exc_info=True)


class SandboxServer:
    """``kind="cloud"``: Bitbucket Cloud REST 2.0 plus OAuth and the ``/_sandbox`` control API;
    ``kind="dc"``: Bitbucket Data Center REST 1.0 over HTTPS (``tls`` to bring a certificate)."""

    def __init__(self, world: World, kind: str = "cloud", *, tls=None, **options: Any):
        self.world = world
        self.kind = kind
        self.api = _api_class(kind)(world, **options)
        self.tls = tls
        if kind == "dc" and tls is None:
            from sandbox.tls import sandbox_tls

            self.tls = sandbox_tls()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca_pem(self) -> str:
        """The private CA that signed the server's certificate (HTTPS sandboxes only)."""
        if self.tls is None:
            raise AttributeError("This sandbox serves plain HTTP")
        return self.tls.ca_pem

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> "SandboxServer":
        handler = type("SandboxHandler", (_Handler,), {"api": self.api})
        if self.tls is not None:
            self._httpd = _TlsServer((host, port), handler, bind_and_activate=False)
            self._httpd.ssl_context = self.tls.server_context()
            try:
                self._httpd.server_bind()
                self._httpd.server_activate()
            except OSError:
                self._httpd.server_close()
                self._httpd = None
                raise
        else:
            self._httpd = _Server((host, port), handler)
        self.api.start(self.url)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # so stop() is quick in tests
            name=f"sandbox-{self.kind}",
            daemon=True,
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("The sandbox is not started")
        host, port = self._httpd.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    @property
    def api_url(self) -> str:
        """The REST base (``https://api.bitbucket.org/2.0`` for real; ``{instance}/rest/api/1.0``
        on Data Center, whose connectors take the instance URL, :attr:`url`)."""
        if self.kind == "dc":
            return f"{self.url}/rest/api/1.0"
        return f"{self.url}/2.0"

    def serve_forever(self) -> None:
        """Block until interrupted (the management command's foreground mode)."""
        if self._thread is None:
            self.start()
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
            self.api.stop()

    def __enter__(self) -> "SandboxServer":
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
