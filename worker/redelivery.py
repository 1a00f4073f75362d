"""Self-healing delivery: a message a job sent that is nowhere in Redis is sent again.

kombu's Redis transport takes a message with ``BRPOP`` and records it as unacknowledged in a
second step. A worker stopped or killed between the two takes the message with it: it is in
neither the queue nor the ``unacked`` hash, so kombu's visibility timeout never brings it back,
and the job would stay ``listing`` or ``running`` forever with an empty queue.

The job store therefore keeps every message a job has sent until it is finished
(:meth:`~worker.jobs.JobStore.batch_sent`, :meth:`~worker.jobs.JobStore.continued`), recorded
*before* it is queued. Each worker runs a :class:`Sweeper`; one at a time (a lock in Redis) it
compares each unfinished job's outstanding messages with what the queue and ``unacked`` hold
(by task id, which names the job and the message), and sends again any message missing for
``ARCNN_REDELIVER_AFTER`` seconds. A message briefly in neither place (between the two steps
above, a few microseconds) is seen again at the next sweep and never re-sent. Sending again is
safe: finished keys are skipped and every count is recorded once (:mod:`worker.jobs`).

A message a worker has *started* is also recorded with that worker's name
(:meth:`~worker.jobs.JobStore.running`), and every worker keeps a heartbeat key alive in Redis
(:data:`HEARTBEAT_TTL` intervals). A message that is only unacknowledged, held by a worker whose
heartbeat has lapsed (SIGKILLed, its host gone), counts as missing too: it is sent again instead
of waiting out ``ARCNN_VISIBILITY_TIMEOUT`` (an hour by default). kombu restores the dead
worker's copy later; by then its batch is finished and it is skipped without any I/O.

Bounds, while any worker is running: a lost message is queued again within
``ARCNN_REDELIVER_AFTER`` plus two sweep intervals (:func:`interval`) of its loss; a message
held by a dead worker within that plus :data:`HEARTBEAT_TTL` intervals of its death.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable

import redis

from worker.jobs import JobStore

log = logging.getLogger(__name__)

LOCK = "arcnn:redelivery:lock"
HEARTBEAT = "arcnn:worker:{owner}"
"""A live worker's key; it expires :data:`HEARTBEAT_TTL` sweep intervals after its last beat."""
HEARTBEAT_TTL = 3
"""Sweep intervals a heartbeat lives: a worker is taken for dead after missing three beats."""
UNACKED = "unacked"
"""kombu's hash of delivered, unacknowledged messages (``unacked_key``, its default)."""

_TASK_ID = re.compile(r"^arcnn-([0-9a-f]{12})-([bl][0-9]+)-")


def task_id(job_id: str, name: str) -> str:
    """A task id naming its job and message (``b<n>``, ``l<n>``), unique per sending."""
    return f"arcnn-{job_id}-{name}-{uuid.uuid4().hex[:8]}"


def interval(redeliver_after: int) -> float:
    """Seconds between sweeps: a third of the redelivery delay, at most 10 s."""
    return max(1.0, min(10.0, redeliver_after / 3))


def present(client: redis.Redis, queue: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(job id, message name) of every job message (queued, unacknowledged), read at once."""
    with client.pipeline(transaction=True) as pipe:
        pipe.lrange(queue, 0, -1)
        pipe.hvals(UNACKED)
        queued, unacked = pipe.execute()
    held = set()
    for raw in unacked:
        try:
            held.add(_message_of(json.loads(raw)[0]))
        except (ValueError, TypeError, KeyError, IndexError):
            continue
    waiting = {_message_of(raw) for raw in queued}
    waiting.discard(None)
    held.discard(None)
    return waiting, held  # type: ignore[return-value]


def beat(client: redis.Redis, owner: str, seconds: float) -> None:
    """Say that worker ``owner`` is alive for the next ``seconds``."""
    client.set(HEARTBEAT.format(owner=owner), 1, ex=max(1, int(seconds)))


def alive(client: redis.Redis, owners: set[str]) -> set[str]:
    """The workers among ``owners`` whose heartbeat has not lapsed."""
    ordered = sorted(owners)
    with client.pipeline(transaction=False) as pipe:
        for owner in ordered:
            pipe.exists(HEARTBEAT.format(owner=owner))
        return {owner for owner, found in zip(ordered, pipe.execute(), strict=True) if found}


def _message_of(envelope: object) -> tuple[str, str] | None:
    try:
        if isinstance(envelope, (str, bytes)):
            envelope = json.loads(envelope)
        match = _TASK_ID.match(envelope["headers"]["id"])  # type: ignore[index]
    except (ValueError, TypeError, KeyError):
        return None
    return (match.group(1), match.group(2)) if match else None


Send = Callable[[str, list, str], None]
"""Queues a message again: (task name, args, task id)."""


def sweep(store: JobStore, queue: str, send: Send, redeliver_after: float, now: float | None = None) -> int:
    """One pass over the unfinished jobs; returns how many messages were sent again."""
    now = time.time() if now is None else now
    waiting, held = present(store.redis, queue)
    resent = 0
    for job_id in store.active():
        sent, missing = store.sent(job_id)
        runners = store.runners(job_id)
        live = alive(store.redis, {runners[name] for name in sent if name in runners})
        for name, raw in sent.items():
            since = missing.get(name)
            # held by a worker: fine unless that worker started it and has since died
            held_alive = (job_id, name) in held and (name not in runners or runners[name] in live)
            if (job_id, name) in waiting or held_alive:
                if since is not None:
                    store.seen_missing(job_id, name, None)
                continue
            if since is None:
                store.seen_missing(job_id, name, now)
            elif now - since >= redeliver_after:
                try:
                    task, args = json.loads(raw)
                except (ValueError, TypeError):
                    log.error("job %s: message %s is recorded unreadably (%r): cannot send it again", job_id, name, raw)
                    continue
                log.warning("job %s: message %s (%s) is neither queued nor being run by a live worker since %.0f s: "
                            "sending it again", job_id, name, task, now - since)
                send(task, args, task_id(job_id, name))
                store.seen_missing(job_id, name, None)
                resent += 1
    return resent


class Sweeper:
    """A daemon thread that sweeps every :func:`interval` seconds when it holds the lock."""

    def __init__(self, store: JobStore, queue: str, send: Send, redeliver_after: int, owner: str) -> None:
        self.store, self.queue, self.send = store, queue, send
        self.redeliver_after = redeliver_after
        self.interval = interval(redeliver_after)
        self.owner = owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redelivery", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            try:
                beat(self.store.redis, self.owner, self.interval * HEARTBEAT_TTL)
                # the lock lapses just before the next tick, so one live worker sweeps at a time
                if self.store.redis.set(LOCK, self.owner, nx=True, ex=max(1, int(self.interval * 0.9))):
                    sweep(self.store, self.queue, self.send, self.redeliver_after)
            except redis.RedisError as error:  # Redis restarting: try again at the next tick
                log.info("redelivery sweep skipped: %s", error)
            except Exception:  # noqa: BLE001 (the thread must outlive any one bad record)
                log.exception("redelivery sweep failed")
            if self._stop.wait(self.interval):
                return
