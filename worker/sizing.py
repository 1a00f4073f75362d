"""How many keys one queued message carries: as many as fit a target time, by their bytes.

A fixed count (100 keys) made a batch of 12 MP photos on a CPU worker run longer than the
visibility timeout: it was redelivered while still running, and ``docker compose stop`` waited
minutes for it. The lister cannot see pixels (only the listing's sizes, without a GET per key),
so a key's cost is its size in bytes times the job's *seconds per byte*: measured by the workers
on the job's own finished batches (wall time of a batch over the bytes it restored, which
includes sharing the worker with its other batches), or, until a batch has finished,
:data:`PRIOR_SECONDS_PER_BYTE`. A message is cut when its estimated cost reaches
``ARCNN_BATCH_SECONDS`` or it holds ``ARCNN_LIST_BATCH`` keys, whichever comes first; a key
costlier than the target goes alone.
"""

from __future__ import annotations

PRIOR_SECONDS_PER_BYTE = 4e-5
"""Before any measurement: a slow case. A CPU worker restores about 0.24 MP/s (1.2 MP in 5 s,
measured in compose), and a JPEG at quality 10 holds about 0.1 byte per pixel (10 pixels per
byte), so a byte costs about 10 / 240,000 s. Higher qualities hold more bytes per pixel and GPUs
are faster: both make real batches shorter than planned, never longer, until the job's own
measurement takes over."""
MEASURED_AFTER_BYTES = 1_000_000
"""Restored bytes a job must have measured before its own rate replaces the prior."""


def seconds_per_byte(measured_seconds: float, measured_bytes: int) -> float:
    """The job's measured rate, or the prior while too little has been measured."""
    if measured_bytes < MEASURED_AFTER_BYTES or measured_seconds <= 0:
        return PRIOR_SECONDS_PER_BYTE
    return measured_seconds / measured_bytes


class BatchCutter:
    """Fills one message at a time: up to ``target_seconds`` of estimated work or ``max_keys``
    keys. Keys come in naming groups (keys sharing a stem, :mod:`arcnn.naming`), which are
    never split below ``max_keys``: a group that would push a non-empty message past either
    limit starts the next one, so a restarted listing, which resumes after the last key sent,
    always resumes after a whole group and names its keys as one whole listing would."""

    def __init__(self, target_seconds: float, max_keys: int, rate: float) -> None:
        self.target_seconds, self.max_keys, self.rate = target_seconds, max_keys, rate
        self.keys, self.seconds = 0, 0.0

    def overflows(self, size: int, keys: int = 1) -> bool:
        """True if the message must be sent before ``keys`` keys of ``size`` bytes in all join
        it (then :meth:`reset`)."""
        return self.keys > 0 and (self.keys + keys > self.max_keys
                                  or self.seconds + self._cost(size, keys) > self.target_seconds)

    def add(self, size: int, keys: int = 1) -> bool:
        """Count ``keys`` keys of ``size`` bytes in all into the message; True when it is full
        (then send it)."""
        self.keys += keys
        self.seconds += self._cost(size, keys)
        full = self.keys >= self.max_keys or self.seconds >= self.target_seconds
        if full:
            self.reset()
        return full

    def _cost(self, size: int, keys: int) -> float:
        return max(size, keys) * self.rate

    def reset(self) -> None:
        self.keys, self.seconds = 0, 0.0
