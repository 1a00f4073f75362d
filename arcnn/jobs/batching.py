"""Cross-image tile batching: tiles of several images share forward passes (for GPUs).

The tiled engine runs one image at a time, in batches of up to ``ARCNN_BATCH_SIZE`` tiles of one
shape. On a GPU a small image (or the last tiles of a large one) leaves most of a batch empty.
With more than one inference thread (``ARCNN_INFER_THREADS``), several restore different images at once, and
their network calls meet in :class:`SharedBatches`: calls with the same tile shape that arrive
within a short window are concatenated along the batch dimension and run as one forward pass.
Results are identical to separate calls (the networks have no cross-sample operations).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from arcnn.restoration import Restorer


@dataclass
class _Call:
    x: torch.Tensor
    result: torch.Tensor | None = None
    error: BaseException | None = None
    done: bool = False
    key: tuple = field(default=())


class SharedBatches:
    """Wraps a network; concurrent calls with equal input shapes run as one batch.

    The first caller of a shape becomes the leader: it waits up to ``window`` seconds (or until
    ``max_batch`` tiles are waiting), runs the concatenated batch and hands every caller its
    slice. Attributes other than the call (``radius``, ``stride``, ...) are the network's.
    """

    def __init__(self, net: nn.Module, max_batch: int, window: float = 0.002) -> None:
        self.net = net
        self.max_batch = max_batch
        self.window = window
        self.forward_passes = 0
        self._cv = threading.Condition()
        self._pending: dict[tuple, list[_Call]] = {}

    def __getattr__(self, name: str) -> object:
        return getattr(self.net, name)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        call = _Call(x, key=(tuple(x.shape[1:]), x.dtype, x.device))
        with self._cv:
            group = self._pending.setdefault(call.key, [])
            group.append(call)
            self._cv.notify_all()
            if len(group) == 1:
                deadline = time.monotonic() + self.window
                while sum(c.x.shape[0] for c in group) < self.max_batch:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cv.wait(remaining)
                del self._pending[call.key]
            else:
                while not call.done:
                    self._cv.wait()
                if call.error is not None:
                    raise call.error
                assert call.result is not None
                return call.result
        self._run(group)
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def _run(self, group: list[_Call]) -> None:
        try:
            output = self.net(torch.cat([c.x for c in group]) if len(group) > 1 else group[0].x)
            start = 0
            for c in group:
                c.result = output[start:start + c.x.shape[0]]
                start += c.x.shape[0]
        except BaseException as error:  # noqa: BLE001 (every caller gets it)
            for c in group:
                c.error = error
        with self._cv:
            self.forward_passes += 1
            for c in group:
                c.done = True
            self._cv.notify_all()


class BatchingRestorer(Restorer):
    """A :class:`Restorer` whose networks are shared between inference threads."""

    def __init__(self, *args: object, max_batch: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.max_batch = max_batch
        self._shared: dict[str, SharedBatches] = {}

    def model(self, name: str) -> SharedBatches:  # type: ignore[override]
        if name not in self._shared:
            self._shared[name] = SharedBatches(super().model(name), self.max_batch)
        return self._shared[name]
