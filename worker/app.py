"""The Celery application, configured for at-least-once delivery of long, GPU-bound tasks.

- JSON only (``accept_content=["json"]``): a message can never carry a pickle.
- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only after its
  batch is fully recorded, so a worker that dies mid-batch leaves it to be redelivered.
- ``visibility_timeout`` (``ARCNN_VISIBILITY_TIMEOUT``): how long Redis waits for the ack before
  redelivering to another worker. It must exceed the longest batch, or live batches get redone
  (harmless for correctness, since recording is idempotent, but wasted work). Live workers sweep
  for expired messages every ``min(10, timeout/5)`` seconds.
- ``worker_prefetch_multiplier=1``: a worker reserves only what it runs, so a dying worker strands
  little and idle workers are not starved.
- Broker connection retries forever: when Redis restarts, workers wait and reconnect.
- ``broker_transport``: kombu's Redis transport with :mod:`worker.broker`'s hardening (garbage
  on the queue is dropped, an ack through a channel closed by a Redis restart is skipped).

Workers use the ``threads`` pool in a single process (see :mod:`worker.commands`): the process
holds the models once, CUDA is never forked, and metrics stay in one in-process registry.
"""

from __future__ import annotations

from celery import Celery

from worker.settings import WorkerSettings

QUEUE = "arcnn"
"""The one queue for listing and restoring tasks (a Redis list of this name)."""

app = Celery("arcnn", include=["worker.tasks"])


def configure(settings: WorkerSettings) -> Celery:
    """Apply ``settings`` to the app; called by every command before it talks to the broker."""
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport="worker.broker:Transport",
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # Sweep for expired unacked messages every ~1/5 of the timeout (kombu's default is
            # every 100 s whatever the timeout), so redelivery follows the timeout closely.
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 5)),
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": 30,
            "socket_connect_timeout": 5,
            "socket_timeout": 30,
            "retry_on_timeout": True,
        },
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app
