"""Webhook delivery as Bitbucket does it: a signed POST, retried on 5xx up to two more times.

Deliveries run on one background thread in the order the changes happened (a mutation never
waits for a receiver), each attempt with a bounded timeout; every attempt is kept in the delivery
log so tests can wait for and inspect them.
"""

import hashlib
import hmac
import http.client
import json
import queue
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit


def signature(secret: str, body: bytes) -> str:
    """``X-Hub-Signature``: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Attempt:
    number: int
    status: int | None
    error: str | None
    seconds: float


@dataclass
class Delivery:
    request_uuid: str
    hook_uuid: str
    event: str
    url: str
    payload: dict
    state: str = "pending"  # pending | delivered | failed
    attempts: list[Attempt] = field(default_factory=list)


class WebhookSender:
    def __init__(
        self,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        retry_delay: float = 0.05,
        user_agent: str = "Bitbucket-Webhooks/2.0",
    ):
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.user_agent = user_agent
        self._queue: queue.Queue[tuple[Delivery, str | None] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._log: list[Delivery] = []
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self._thread.start()

    def send(
        self, *, url: str, event: str, hook_uuid: str, secret: str | None, payload: dict
    ) -> Delivery:
        delivery = Delivery(str(uuid.uuid4()), hook_uuid, event, url, payload)
        with self._lock:
            self._log.append(delivery)
            self._pending += 1
        self._queue.put((delivery, secret))
        return delivery

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            delivery, secret = item
            try:
                self._deliver(delivery, secret)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, delivery: Delivery, secret: str | None) -> None:
        body = json.dumps(delivery.payload).encode()
        for number in range(1, self.retries + 2):
            headers = {
                "Content-Type": "application/json",
                "User-Agent": self.user_agent,
                "X-Event-Key": delivery.event,
                "X-Hook-UUID": delivery.hook_uuid,
                "X-Request-UUID": delivery.request_uuid,
                "X-Attempt-Number": str(number),
            }
            if secret:
                headers["X-Hub-Signature"] = signature(secret, body)
            started = time.monotonic()
            status, error = None, None
            try:
                status = self._post(delivery.url, body, headers)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
            delivery.attempts.append(
                Attempt(number, status, error, round(time.monotonic() - started, 3))
            )
            if status is not None and status < 500:
                delivery.state = "delivered" if status < 400 else "failed"
                return
            if number <= self.retries:
                time.sleep(self.retry_delay)
        delivery.state = "failed"

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """One POST with http.client, which keeps header names as written (``X-Hook-UUID``)
        and never goes through an environment proxy."""
        parts = urlsplit(url)
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(parts.netloc, timeout=self.timeout)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("POST", target, body, headers)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once every queued delivery has finished (all attempts made)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._log)

    def as_json(self) -> list[dict]:
        return [asdict(delivery) for delivery in self.deliveries()]

    def reset(self) -> None:
        with self._lock:
            self._log.clear()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=self.timeout + 1)
