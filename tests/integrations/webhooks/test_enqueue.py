"""The endpoint's enqueue (``TaskPublisher``) sends the very message ``delay`` sends, on the
real Redis broker, and a real worker consumes it (PostgreSQL and Redis only: skipped
otherwise, failing with ``CI=true``)."""

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from integrations import tasks
from integrations.models import WebhookDelivery
from integrations.task_publisher import TaskPublisher
from portal.celery import app as celery_app
from tests.integrations.webhooks.conftest import deliver
from tests.reliability.process_helpers import (
    celery_workers,  # noqa: F401 - a fixture
    require_postgres,
)

WAIT_SECONDS = 60


@contextmanager
def tasks_sent_to(queue: str) -> Iterator[None]:
    """Tasks sent to the broker (not run in process), to ``queue`` unless routed elsewhere."""
    conf = celery_app.conf
    previous = conf.task_always_eager, conf.task_default_queue
    conf.task_always_eager, conf.task_default_queue = False, queue
    try:
        yield
    finally:
        conf.task_always_eager, conf.task_default_queue = previous


@pytest.fixture
def broker_queue():
    """A queue of the test's own on the broker, the default while the test runs; deleted
    afterwards."""
    require_postgres(redis=True)
    queue = f"lantern-test-{uuid.uuid4().hex[:10]}"
    with tasks_sent_to(queue):
        yield queue
    client = redis.Redis.from_url(celery_app.conf.broker_url)
    for key in client.keys(f"{queue}*"):
        client.delete(key)


def queued_messages(queue: str) -> list[dict]:
    """The messages waiting on ``queue`` (any priority: Redis keeps a list per priority
    step), oldest first within a list, with their bodies decoded."""
    client = redis.Redis.from_url(celery_app.conf.broker_url)
    messages = [
        json.loads(raw)
        for key in sorted(client.keys(f"{queue}*"))
        for raw in reversed(client.lrange(key, 0, -1))
    ]
    for message in messages:
        assert message["properties"]["body_encoding"] == "base64"
        message["body"] = json.loads(base64.b64decode(message["body"]))
    return messages


def without_ids(message: dict) -> dict:
    """A message with what differs between any two sends (task id, delivery tag) taken out."""
    message = json.loads(json.dumps(message))
    task_id = message["headers"].pop("id")
    assert message["headers"].pop("root_id") == task_id
    assert message["properties"].pop("correlation_id") == task_id
    uuid.UUID(message["properties"].pop("delivery_tag"))
    return message


def test_published_message_is_the_one_delay_sends(broker_queue):
    tasks.webhook_delivery_process.delay(41)
    tasks.webhook_delivery_publisher.publish(41)
    sent_by_delay, published = queued_messages(broker_queue)
    assert published["headers"]["task"] == "integrations.webhook_delivery_process"
    assert published["body"][0] == [41]
    assert published["properties"]["delivery_info"]["routing_key"] == broker_queue
    assert without_ids(published) == without_ids(sent_by_delay)
    assert published["headers"]["id"] != sent_by_delay["headers"]["id"]


def test_the_task_s_own_options_are_honoured(broker_queue, monkeypatch):
    monkeypatch.setattr(tasks.webhook_delivery_process, "priority", 7)
    monkeypatch.setattr(tasks.webhook_delivery_process, "time_limit", 90)
    monkeypatch.setattr(tasks.webhook_delivery_process, "_exec_options", None)  # Celery's cache
    tasks.webhook_delivery_process.delay(5)
    TaskPublisher(tasks.webhook_delivery_process).publish(5)
    sent_by_delay, published = queued_messages(broker_queue)
    assert published["properties"]["priority"] == 7
    assert published["headers"]["timelimit"] == [90, None]
    assert without_ids(published) == without_ids(sent_by_delay)


def test_each_thread_publishes_on_a_producer_of_its_own(broker_queue):
    publisher = TaskPublisher(tasks.webhook_delivery_process)
    producers = []

    def send(number: int) -> None:
        for offset in range(25):
            publisher.publish(number * 100 + offset)
        producers.append(publisher.producer)

    threads = [threading.Thread(target=send, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(producer) for producer in producers}) == 4
    sent = sorted(message["body"][0][0] for message in queued_messages(broker_queue))
    assert sent == sorted(n * 100 + offset for n in range(4) for offset in range(25))


def test_an_app_running_tasks_in_process_runs_it_with_delay(monkeypatch):
    calls = []
    assert celery_app.conf.task_always_eager  # as in every test unless switched off
    monkeypatch.setattr(tasks.webhook_delivery_process, "delay", calls.append)
    TaskPublisher(tasks.webhook_delivery_process).publish(3)
    assert calls == [3]


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_processes_the_delivery_the_endpoint_enqueued(
    cloud_integration,
    celery_workers,  # noqa: F811
):
    worker = celery_workers()
    with tasks_sent_to(worker.queue):
        response = deliver(cloud_integration, "repo:push", "repo_push")
    assert response.status_code == 202, response.content
    delivery = WebhookDelivery.objects.get(pk=response.json()["id"])
    deadline = time.monotonic() + WAIT_SECONDS
    while delivery.processed_at is None and time.monotonic() < deadline:
        time.sleep(0.2)
        delivery.refresh_from_db()
    # The connector points nowhere reachable: the worker's refresh fails, and says so.
    assert delivery.processed_at is not None, worker.log_tail()
    assert delivery.outcome == "failed" and delivery.detail.startswith("Run "), delivery.detail
    assert "integrations.webhook_delivery_process[" in worker.log_tail()  # run there, not here
