"""Small image files and an ``arcnn`` subprocess for tests that need no servers (this module must
not import moto, boto3 or redis: the unit and cli tests use it)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
from PIL import Image

MODEL = "random:9-7-1-5"
"""An untrained AR-CNN: restores (changes) every image, fast, with no bundled weights needed."""


def jpeg(seed: int, width: int = 48, height: int = 40, quality: int = 20, **params: object) -> bytes:
    """A noise JPEG (a model changes it; estimated quality ``quality``)."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        buffer, "JPEG", quality=quality, **params)
    return buffer.getvalue()


def arcnn(*args: str, stdin: bytes | None = None, **env: str) -> subprocess.CompletedProcess:
    """``arcnn ARGS`` with no ``ARCNN_*`` from the shell, on the CPU, one torch thread; bytes out."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ARCNN_", "AWS_"))}
    environ.update(ARCNN_DEVICE="cpu", ARCNN_TORCH_THREADS="1", ARCNN_TILE="64", OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "arcnn", *args], input=stdin, capture_output=True,
                          env=environ, timeout=120)
