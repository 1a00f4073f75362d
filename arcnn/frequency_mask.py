"""A luma model's change kept only at the DCT frequencies where the file's steps are as coarse as
the model's training steps.

A ``jpeg-qN`` model learned to undo IJG quality N's quantisation. On a JPEG whose table has
another shape (a flat table of 10s, a camera's or an editor's table) it is right at the
frequencies where the file's steps are about as coarse as IJG qN's and wrong where they are much
finer: there it removes real detail, as if it had been quantised away (a flat table of 10s
restored by jpeg-q90, whose high steps reach 24, lost up to 0.27 dB on BSDS500 val luma). So the
model is chosen by the low frequencies, where a photo's coefficients and a JPEG's distortion are,
and its change is taken to the file's own 8x8 grid and kept only at the frequencies whose step is
at least :data:`KEEP_SHARE` times the model's: elsewhere the input's coefficient stays
(docs/model-choice.md has the measurements).

The converse case is handled here too: where a model fits every frequency (its steps nowhere
coarser than the file's) but the file is much coarser than it at some of them, a coarser model
(a lower IJG quality) fits those better. :func:`coarser_parts` names, per frequency, the
coarsest of the next few models whose step there is still not above the file's, and the
restorer takes each one's output at its own frequencies (:func:`apply_mask` again).

Chroma of a subsampled file whose chroma steps are too mild for any condition the chroma network
is measured to help at keeps the part of the network's change finer than one chroma sample (its
upsampling, which no chroma step limits) and, of the part the samples hold, only the frequencies
where the file's step is :data:`CHROMA_KEEP_SHARE` times the condition's (:func:`chroma_keep`,
:func:`mask_chroma_change`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from arcnn.history import DCT
from arcnn.model_names import QUALITY_FAMILIES, parse_numbered
from arcnn.quality import STD_CHROMA, STD_LUMA, nowhere_coarser, scaled_table

KEEP_SHARE = 1.25
"""A frequency keeps the model's change where the file's step is at least this share of the
model's. On 40 BSDS500 val images (luma model alone), 0.75 let a flat table of 10s and a ramp of
8 lose 0.10 and 0.24 dB on one image under jpeg-q90, 1.0 still 0.04 and 0.10; 1.25 kept every
image within 0.05 dB (docs/model-choice.md)."""

CHROMA_KEEP_SHARE = 2.5
"""A chroma frequency's samples keep the chroma network's change where the file's step is at least
this share of the condition's. ``python -m training.studies.chroma_fallback --share S`` on 40
BSDS500 val images, the network at q90 on flat tables of 8-12s and ramps of 7-8: 1.25 and 2.0
made an image 0.13 and 0.07 dB worse (flat 8s), 2.5 kept every image within 0.03 dB and gained
+0.01 dB over the upsampling alone on average (+0.03 at flat 10s, +0.05 at flat 12s)."""

COARSER_DEPTH = 1
"""How many lower-quality models a non-IJG table may draw on beside the one the policy chose (the
next ones on the tier's quality grid): each costs one more luma pass over the image. Chosen on
BSDS500 val with ``python -m training.studies.table_composition`` (docs/model-choice.md)."""

STRIP_BLOCKS = 64
"""Block rows transformed at a time: the work arrays stay a strip of 512 rows, whatever the image."""

SAMPLE_BAND = 256
"""Chroma sample rows whose full-resolution pixels :func:`mask_chroma_change` works on at a time."""


def model_quality(name: str) -> int | None:
    """The IJG quality a luminance model was trained for (``jpeg-q90``, ``fast-arcnn-q90``: 90), or
    None for models without one (WebP, platform, user-trained files)."""
    parsed = parse_numbered(name)
    if parsed is None or parsed.variant is not None or parsed.family not in QUALITY_FAMILIES.values():
        return None
    return parsed.number


def frequency_mask(table: list[int] | tuple[int, ...], quality: int) -> np.ndarray | None:
    """The 64 frequencies (natural order, 8 x 8 bools) where the model for IJG ``quality`` may
    change a JPEG of luminance ``table``; None where it may change all of them: its steps are
    nowhere coarser than the file's, so it fits every frequency."""
    steps, model = np.asarray(table, dtype=np.float64), scaled_table(STD_LUMA, quality)
    if nowhere_coarser(model, steps):
        return None
    keep = steps >= KEEP_SHARE * model
    return None if keep.all() else keep.reshape(8, 8)


def coarser_parts(table: list[int] | tuple[int, ...], quality: int, models: dict[int, str],
                  depth: int = COARSER_DEPTH) -> tuple[tuple[str, np.ndarray], ...]:
    """The lower-quality models (of ``models``, quality -> name) that restore some frequencies
    of a JPEG of luminance ``table`` better than the model for IJG ``quality``, with the
    frequencies each takes (8 x 8 bools, disjoint): of the ``depth`` models next below
    ``quality``, each frequency goes to the coarsest whose step there is not above the file's.
    Empty where none is: the file's steps are nowhere that coarse (every IJG table, for one)."""
    steps = np.asarray(table, dtype=np.float64)
    below = sorted((q for q in models if q < quality), reverse=True)[:depth]
    owner = np.full(64, -1)
    for i, q in enumerate(below):  # finer to coarser: IJG steps grow as quality falls
        owner[scaled_table(STD_LUMA, q) <= steps + 0.5] = i  # nowhere_coarser's half-step tolerance
    return tuple((models[q], (owner == i).reshape(8, 8)) for i, q in enumerate(below) if (owner == i).any())


def apply_mask(before: np.ndarray, after: np.ndarray, keep: np.ndarray, offset: tuple[int, int] = (0, 0)) -> None:
    """``after`` (the model's output plane) := ``before`` + the change ``after - before`` with only
    the ``keep`` frequencies of each 8x8 block of the grid at ``offset``, in place. Pixels outside
    the grid's full blocks (a border under 8 pixels) keep ``before``: no step is known for them.
    DCT-domain masking is linear, so the result is the same on any plane scale (full or studio
    range) as long as ``before`` and ``after`` share it."""
    dy, dx = offset
    rows, cols = (before.shape[0] - dy) // 8, (before.shape[1] - dx) // 8
    weight = keep.astype(np.float32)
    bottom, right = dy + 8 * rows, dx + 8 * cols
    for border in (np.s_[:dy], np.s_[bottom:], np.s_[:, :dx], np.s_[:, right:]):
        after[border] = before[border]
    for top in range(0, rows, STRIP_BLOCKS):
        n = min(STRIP_BLOCKS, rows - top)
        y0, x1 = dy + 8 * top, right
        change = (after[y0:y0 + 8 * n, dx:x1] - before[y0:y0 + 8 * n, dx:x1]).astype(np.float32)
        blocks = change.reshape(n, 8, cols, 8).transpose(0, 2, 1, 3)
        kept = DCT.T @ ((DCT @ blocks @ DCT.T) * weight) @ DCT
        after[y0:y0 + 8 * n, dx:x1] = before[y0:y0 + 8 * n, dx:x1] + kept.transpose(0, 2, 1, 3).reshape(8 * n, 8 * cols)


def chroma_keep(table: list[int] | tuple[int, ...], quality: int) -> np.ndarray:
    """The chroma frequencies (8 x 8 bools) where the chroma network conditioned on IJG
    ``quality`` may change the chroma samples of a file of chroma ``table``: those whose step is
    at least :data:`CHROMA_KEEP_SHARE` times IJG ``quality``'s chroma step (possibly none)."""
    steps = np.asarray(table, dtype=np.float64)
    return (steps >= CHROMA_KEEP_SHARE * scaled_table(STD_CHROMA, quality)).reshape(8, 8)


def mask_chroma_change(before: np.ndarray, after: np.ndarray, keep: np.ndarray, scale: tuple[int, int],
                       phase: tuple[int, int] = (0, 0)) -> None:
    """``after`` (2 x H x W restored Cb/Cr) := ``before`` + the part of the change finer than one
    chroma sample (the chroma network's upsampling of a subsampled file), plus the part the
    samples hold only at the ``keep`` frequencies of the chroma plane's 8x8 blocks; in place.

    ``scale`` is the file's luma rows and columns per chroma sample ((2, 2) for 4:2:0) and
    ``phase`` where the first whole sample, and the first chroma block, start. The change is
    averaged over each sample's pixels (as the encoder subsampled; edge pixels repeat where a
    sample is cut by the border); those averages, masked on the chroma grid (:func:`apply_mask`:
    outside full blocks nothing is kept) to what ``keep`` drops, are upsampled bilinearly (as a
    decoder's fancy upsampling) and taken off. Full-resolution work goes in bands of
    :data:`SAMPLE_BAND` sample rows: beside the planes, only a band's arrays and one plane of
    sample averages (a quarter plane for 4:2:0) exist at once.
    """
    sy, sx = scale
    shift = (phase[0] % sy, phase[1] % sx)
    for plane in range(before.shape[0]):
        dropped = _sample_means(before[plane], after[plane], scale, shift)
        if keep.any():
            kept = dropped.copy()
            apply_mask(np.zeros_like(dropped), kept, keep)
            dropped -= kept
        _take_off_upsampled(after[plane], dropped, scale, shift)


def _sample_rows(height: int, sy: int, py: int) -> int:
    return -(-(height + py) // sy)


def _sample_means(before: np.ndarray, after: np.ndarray, scale: tuple[int, int], shift: tuple[int, int]) -> np.ndarray:
    """The change ``after - before`` (H x W) averaged over each chroma sample's pixels, the first
    whole sample at ``shift``; a sample cut by the border repeats the edge pixels."""
    (sy, sx), (py, px) = scale, shift
    height, width = before.shape
    rows, cols = _sample_rows(height, sy, py), _sample_rows(width, sx, px)
    out = np.empty((rows, cols), dtype=np.float32)
    band = SAMPLE_BAND
    for r0 in range(0, rows, band):
        r1 = min(rows, r0 + band)
        top, bottom = max(0, r0 * sy - py), min(height, r1 * sy - py)
        change = after[top:bottom] - before[top:bottom]
        pad = ((top - (r0 * sy - py), (r1 * sy - py) - bottom), (px, cols * sx - width - px))
        change = np.pad(change, pad, mode="edge")
        out[r0:r1] = change.reshape(r1 - r0, sy, cols, sx).mean(axis=(1, 3), dtype=np.float32)
    return out


def _take_off_upsampled(after: np.ndarray, samples: np.ndarray, scale: tuple[int, int],
                        shift: tuple[int, int]) -> None:
    """``after`` (H x W) -= ``samples`` upsampled bilinearly (half-pixel centres, edges repeated),
    in bands of sample rows, each with one sample row of context either side: the bilinear
    weights reach no further, so the bands join exactly."""
    (sy, sx), (py, px) = scale, shift
    height, width = after.shape
    rows = samples.shape[0]
    band = SAMPLE_BAND
    for r0 in range(0, rows, band):
        r1 = min(rows, r0 + band)
        lo, hi = max(0, r0 - 1), min(rows, r1 + 1)
        up = samples[lo:hi]
        if (sy, sx) != (1, 1):
            up = F.interpolate(torch.from_numpy(np.ascontiguousarray(up))[None, None], scale_factor=(sy, sx),
                               mode="bilinear", align_corners=False)[0, 0].numpy()
        top, bottom = max(0, r0 * sy - py), min(height, r1 * sy - py)
        first = top + py - lo * sy  # the band's first image row, in the upsampled rows
        after[top:bottom] -= up[first:first + bottom - top, px:px + width]
