"""kombu's Redis transport, hardened against what a shared queue can hold and a Redis restart.

Celery stops a worker on any exception it does not expect from the transport ("Unrecoverable
error"), so two things a long-running worker meets in practice must not reach it:

- **Anything on the queue that is not a kombu message.** ``LPUSH arcnn 'not a message {'`` made
  kombu's JSON decoding of the envelope raise in the consumer, and the worker stopped; the next
  worker would stop the same way. The item has already been popped, so dropping it (with a log
  line naming it) loses nothing that could ever run. Messages that *are* kombu envelopes but
  not valid tasks are Celery's business: :func:`worker.tasks.guarded_strategy` drops those.
- **A channel used after a Redis restart closed its connection.** kombu then raises
  ``AttributeError`` from ``_connparams`` (its connection's client is gone) in two places seen
  in practice: closing the channel while reconnecting (it restores unacknowledged messages
  first) and acknowledging a batch that was running across the restart and finished after the
  reconnect. The first now raises a connection error, which kombu ignores while closing; the
  second is skipped. Both are safe: the messages stay in Redis's ``unacked`` hash, come back
  after ``ARCNN_VISIBILITY_TIMEOUT``, and a finished batch is then skipped without any I/O.

Selected with Celery's ``broker_transport`` setting (:func:`worker.app.configure`).
"""

from __future__ import annotations

import json
import logging
from queue import Empty

import redis
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

_SHOWN = 120
"""Characters of a dropped queue item that are logged (it may be anything, of any size)."""


class Channel(kombu_redis.Channel):
    """A Redis channel that drops undecodable queue items and, once a Redis restart has closed
    it, neither reconnects (a connection error kombu ignores while closing) nor acknowledges."""

    def _brpop_read(self, **options: object) -> bool:
        try:
            return super()._brpop_read(**options)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError) as error:
            _dropped(error)
            return False

    def _get(self, queue: str) -> dict:
        try:
            return super()._get(queue)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            _dropped(error)
            raise Empty() from error

    def _closed(self) -> bool:
        """True once the transport that opened this channel has been closed (Redis restarted)."""
        return getattr(self.connection, "client", None) is None

    def _connparams(self, asynchronous: bool = False) -> dict:
        if self._closed():
            raise redis.ConnectionError("this channel's broker connection was closed (Redis restarted)")
        return super()._connparams(asynchronous=asynchronous)

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        if self._closed():
            log.warning("message %s finished after its broker connection was closed: not acknowledged, it is "
                        "redelivered after ARCNN_VISIBILITY_TIMEOUT and finds its keys done", delivery_tag)
            return
        super().basic_ack(delivery_tag, multiple=multiple)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if self._closed():
            log.warning("message %s rejected after its broker connection was closed: it is redelivered "
                        "after ARCNN_VISIBILITY_TIMEOUT", delivery_tag)
            return
        super().basic_reject(delivery_tag, requeue=requeue)


def _dropped(error: Exception) -> None:
    document = getattr(error, "doc", None)
    shown = repr(document[:_SHOWN]) if isinstance(document, str) else "(not shown)"
    log.error("dropped a queue item that is not a message (%s: %s): %s", type(error).__name__, error, shown)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
