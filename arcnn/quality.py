"""Estimate the IJG quality factor a JPEG was saved with, from its quantization tables.

libjpeg (and so Pillow, and most software) derives its tables from the two standard tables of
the JPEG specification (Annex K) scaled by ``s = 5000/q`` for q < 50 and ``s = 200 - 2q`` above:
``entry = clamp((std * s + 50) // 100, 1, 255)``. Inverting that is a lookup: compute the tables
for every q in 1..100 and find the one the file carries. Tables that match no quality (cameras,
Photoshop, custom encoders) are reported as unknown rather than guessed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
])
STD_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
])


def scaled_table(standard: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's ``jpeg_quality_scaling`` + ``jpeg_add_quant_table`` (baseline: max 255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((standard * scale + 50) // 100, 1, 255)


@lru_cache(maxsize=1)
def ijg_tables() -> tuple[np.ndarray, np.ndarray]:
    """Every IJG quality's (luma, chroma) tables, 100 x 64 each (row q-1: quality q, natural
    order): built once, shared by the quality estimate and the readers of non-IJG tables."""
    qualities = range(1, 101)
    luma, chroma = (np.stack([scaled_table(std, q) for q in qualities]) for std in (STD_LUMA, STD_CHROMA))
    luma.flags.writeable = chroma.flags.writeable = False
    return luma, chroma


def nowhere_coarser(tables: np.ndarray, steps: np.ndarray | list[int]) -> np.ndarray:
    """For each table (its last axis: the frequencies), whether none of its steps is coarser than
    ``steps``: a model trained on it does not remove detail the file kept. Steps are integers, so
    half a step is the tolerance."""
    return np.all(np.asarray(tables) <= np.asarray(steps, dtype=np.float64) + 0.5, axis=-1)


def estimate_quality(quantization: dict[int, list[int]] | None) -> int | None:
    """IJG quality 1..100 for standard-scaled tables (natural order, as Pillow gives them), else None.

    Several qualities can produce identical tables (near q=100 most entries saturate at 1);
    the highest such quality is returned, which is within +-1 of the true one in practice.
    """
    if not quantization or 0 not in quantization:
        return None
    luma = np.asarray(quantization[0])
    if luma.shape != (64,):
        return None
    lumas, chromas = ijg_tables()
    match = np.all(lumas == luma, axis=1)
    if 1 in quantization and len(quantization[1]) == 64:
        match &= np.all(chromas == np.asarray(quantization[1]), axis=1)
    hits = np.flatnonzero(match)
    return int(hits[-1]) + 1 if hits.size else None
