"""Webhook intake: signed Bitbucket Cloud deliveries per second that one server process accepts
(signature verified, delivery recorded, processing enqueued on the Redis broker)."""

import json
import os
import threading
import uuid
from pathlib import Path

import httpx

from bench.common import run_concurrently, scenario, served, target

BENCH_NAME = "bench-webhooks"
SECRET = "bench-webhook-secret"  # noqa: S105 (the bench's own integration)
BROKER = "redis://127.0.0.1:6379/15"  # a database of its own, emptied afterwards


def _payloads(count: int) -> list[bytes]:
    """``repo:updated`` bodies rendered by the Bitbucket Cloud sandbox, as Bitbucket sends them."""
    from sandbox import SandboxServer, World
    from sandbox.cloud.objects import CloudRenderer
    from sandbox.world import WorldEvent

    world = World.generate(1, repos=50, projects=3, prs_per_repo=0, commits_per_repo=1)
    server = SandboxServer(world, kind="cloud")
    render = CloudRenderer(world, "https://bitbucket.org")
    repositories = list(world.iter_repositories())
    bodies = []
    for index in range(count):
        repo = repositories[index % len(repositories)]
        change = {"description": {"old": f"v{index}", "new": f"v{index + 1}"}}
        event = WorldEvent("repository.updated", "acme", repo, None, {"changes": change})
        bodies.append(json.dumps(server.api._payload(event, render)).encode())
    return bodies


def _integration():
    from django.conf import settings

    from integrations import services

    _cleanup()
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = False  # no Bitbucket to register hooks with
    connector = services.connector_create(
        name=BENCH_NAME,
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url="",  # Bitbucket Cloud's default, never contacted (nor resolved) here
        secrets={"token": "unused"},
    )
    integration = services.integration_create(
        connector=connector, name=BENCH_NAME, target={"workspace": "acme"}
    )
    integration.webhook_secret = SECRET
    integration.save(update_fields=["webhook_secret_encrypted"])
    return integration


def _cleanup() -> None:
    from integrations.models import Connector, Integration

    Integration.objects.filter(connector__name=BENCH_NAME).delete()
    Connector.objects.filter(name=BENCH_NAME).delete()


def _server_cpu_seconds(origin: str) -> float | None:
    """CPU time (user and system) the gunicorn processes serving ``origin`` have used so far, read
    from ``/proc`` (``None`` where there is none): deliveries per second depend on what else the
    machine runs, the server's CPU per delivery much less."""
    bind = f"--bind={origin.removeprefix('http://')}".encode()
    total = 0.0
    found = False
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if bind not in (process / "cmdline").read_bytes().split(b"\0"):
                continue
            fields = (process / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        found = True
    return total if found else None


def _broker_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(BROKER, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@scenario("webhook_intake")
def webhook_intake(quick: bool) -> dict:
    """Deliveries from 8 concurrent senders to gunicorn with one worker process (8 threads)."""
    import redis

    from integrations.models import WebhookDelivery
    from sandbox.webhooks import signature

    if not _broker_available():
        return {"skipped": f"needs Redis at {BROKER} (deliveries are enqueued on the broker)"}
    count, senders = (500, 8) if quick else (5_000, 8)
    bodies = _payloads(count)
    integration = _integration()
    url = f"/webhooks/bitbucket-cloud/{integration.pk}"
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def sender(offset: int) -> None:
        local: dict[int, int] = {}
        with httpx.Client(base_url=origin, timeout=30) as client:
            for body in bodies[offset::senders]:
                headers = {
                    "Content-Type": "application/json",
                    "X-Event-Key": "repo:updated",
                    "X-Request-UUID": str(uuid.uuid4()),
                    "X-Hook-UUID": "{bench}",
                    "X-Hub-Signature": signature(SECRET, body),
                }
                status = client.post(url, content=body, headers=headers).status_code
                local[status] = local.get(status, 0) + 1
        with lock:
            for status, number in local.items():
                statuses[status] = statuses.get(status, 0) + number

    try:
        with served(workers=1, threads=8, env={"CELERY_BROKER_URL": BROKER}) as origin:
            cpu_before = _server_cpu_seconds(origin)
            wall = run_concurrently(sender, senders)
            cpu_after = _server_cpu_seconds(origin)
        recorded = WebhookDelivery.objects.filter(integration=integration).count()
        enqueued = redis.Redis.from_url(BROKER).llen("celery")
    finally:
        _cleanup()
        redis.Redis.from_url(BROKER).flushdb()
    figures = {
        "deliveries": count,
        "senders": senders,
        "server": "gunicorn, 1 worker x 8 threads",
        "statuses": {str(status): number for status, number in sorted(statuses.items())},
        "recorded": recorded,
        "enqueued": enqueued,
        "deliveries_per_s": round(statuses.get(202, 0) / wall),
    }
    if cpu_before is not None and cpu_after is not None:
        figures["server_cpu_ms_per_delivery"] = round((cpu_after - cpu_before) / count * 1000, 2)
    if statuses.get(202, 0) != count or recorded != count or enqueued != count:
        raise RuntimeError(f"not every delivery was accepted, recorded and enqueued: {figures}")
    target(
        figures, "deliveries accepted per second", figures["deliveries_per_s"], 300, at_least=True
    )
    return figures
