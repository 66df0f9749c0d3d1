"""A Celery worker keeps the tasks it runs from being handed to another worker while it lives.

With Redis as the broker, a task a worker has taken and not yet acknowledged (task_acks_late)
waits in kombu's index of unacknowledged messages, scored with the time it was taken. Every
worker puts back in the queue the ones older than the visibility timeout, presuming their
worker dead: a task running longer than the timeout would be run a second time, so without more
the timeout must exceed the longest task, and a dead worker's task waits that long. A worker
that scores its own running tasks anew every few seconds (a lease) leaves only a dead worker's
tasks to grow old: the timeout can be short, whatever the tasks' length."""

from __future__ import annotations

import logging
import threading
import time

import redis
from celery.worker import state
from kombu.transport.redis import Channel

logger = logging.getLogger(__name__)

# kombu's sorted set of unacknowledged messages (no key prefix is configured).
UNACKED_INDEX = Channel.unacked_index_key


class LeaseRenewer(threading.Thread):
    """Every `interval` seconds, scores the worker's running tasks with the time now, as kombu
    scores a task when a worker takes it (each machine's clock, as kombu's)."""

    def __init__(self, broker_url: str, interval: float):
        super().__init__(name="celery-task-leases", daemon=True)
        self.client = redis.Redis.from_url(broker_url)
        self.interval = interval

    def run(self) -> None:  # a daemon thread: it ends with the worker
        while True:
            time.sleep(self.interval)
            self.renew()

    def renew(self) -> int:
        """Renews the running tasks' leases; returns how many were renewed."""
        try:
            tags = [request.message.delivery_tag for request in list(state.active_requests)]
        except RuntimeError:  # the worker's set changed while it was copied: next round
            return 0
        if not tags:
            return 0
        try:
            # XX: only tasks still unacknowledged; one acknowledged meanwhile stays gone.
            return self.client.zadd(UNACKED_INDEX, dict.fromkeys(tags, time.time()), xx=True,
                                    ch=True)
        except redis.RedisError as exc:  # the worker's own connection retries; so do we
            logger.warning("could not renew the running tasks' leases in Redis: %s", exc)
            return 0
