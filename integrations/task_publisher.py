"""Publishing one task's messages cheaply, for callers that enqueue hundreds a second from one
process (the webhook endpoint, issue #8).

``task.delay()`` costs about 0.3 ms of CPU on the Redis broker, most of it work that is the same
for every message: acquiring a producer from the pool, working out ``apply_async``'s options,
redeclaring the queue, and (kombu's Redis channel) building a new Redis client for each message.
:class:`TaskPublisher` sends the same message — Celery's own ``create_task_message`` and
``send_task_message``, routed by the app's router, so a worker cannot tell the difference (a test
compares the two) — at about half that cost: each thread keeps one producer on a broker
connection of its own, declares the queue once, and on a ``redis://`` broker publishes through
one Redis client. What it leaves out are options a web request never has: a parent task, a
countdown or an expiry.
"""

import threading
from functools import cached_property

from celery.utils import uuid
from kombu import Connection
from kombu.common import maybe_declare
from kombu.transport import redis as kombu_redis


class _OneClientChannel(kombu_redis.Channel):
    """A Redis channel whose synchronous commands (publishing among them) share one client over
    the channel's pool, where kombu builds a client per command."""

    @cached_property
    def _sync_client(self):
        return super()._create_client()

    def _create_client(self, asynchronous=False):
        return super()._create_client(asynchronous=True) if asynchronous else self._sync_client


class _OneClientTransport(kombu_redis.Transport):
    Channel = _OneClientChannel


class TaskPublisher(threading.local):
    """``publish(*args)`` enqueues ``task(*args)``, as ``task.delay(*args)`` would; an app that
    runs tasks in process (``task_always_eager``) runs it with ``delay``. One per task, shared
    by the threads of a process (each gets its own producer and connection)."""

    def __init__(self, task) -> None:
        self.task = task
        self.producer = None
        self.declared: set[str] = set()

    def _connection(self) -> Connection:
        app = self.task.app
        connection = app.connection_for_write()
        if connection.transport_cls == "redis":
            connection.release()
            connection = app.connection_for_write(transport=_OneClientTransport)
        return connection

    def publish(self, *args) -> None:
        task = self.task
        app = task.app
        if app.conf.task_always_eager:
            task.delay(*args)
            return
        amqp = app.amqp
        # The task's own options (queue, priority, time limits...), as apply_async takes them.
        options = {k: v for k, v in task._get_exec_options().items() if v is not None}
        limits = {name: options.pop(name, None) for name in ("time_limit", "soft_time_limit")}
        route = amqp.router.route(options, task.name, args, {}, task)
        if self.producer is None:
            self.producer = amqp.Producer(self._connection(), auto_declare=False)
        queue = route.get("queue")
        if queue is not None and queue.name not in self.declared:
            maybe_declare(queue, self.producer.channel, retry=True)
            self.declared.add(queue.name)
        message = amqp.create_task_message(
            uuid(),
            task.name,
            args,
            {},
            reply_to=app.thread_oid,
            create_sent_event=app.conf.task_send_sent_event,
            **limits,
            **route,
        )
        amqp.send_task_message(self.producer, task.name, message, declare=[], **route)
