"""Reading an image's compression history from its pixels.

A JPEG decoder writes pixels whose 8x8 block DCT coefficients, on the grid the encoder used, sit
on a lattice: each frequency ``f`` is an integer multiple of its quantisation step ``q_f`` plus a
little rounding noise. Saving those pixels again as PNG, or re-saving them as a JPEG of higher
quality (aligned or after a crop), keeps most of that lattice, and it is what the artifacts come
from. So the history is read from the decoded luma alone (Fan and de Queiroz 2003; Neelamani et
al. 2006), without trusting any file tables:

1. **Grid candidates.** Blocking makes pixel differences across block boundaries larger than
   those inside blocks; the per-phase profile of horizontal and vertical differences gives the
   strongest column and row phases, and the second ones where at least half as strong (the
   dominant, lowest-quality grid is among them even after a shifted re-save). Those, and the
   file's own grid (0, 0), are the candidate offsets.
2. **Steps.** At each candidate offset, for each of the lowest AC frequencies, every integer
   step ``s`` is scored by the log-likelihood ratio of "multiple of s plus Gaussian noise"
   against "anything" over the coefficients that would not quantise to zero. The true step wins
   over its divisors (a finer lattice explains the data as well, for a smaller likelihood per
   coefficient) and over its multiples (half the coefficients fall between their points).
   Clipped blocks (a pixel at 0 or 255) are left out: clipping moves them off the lattice.
3. **Evidence.** The summed ratio per block of the best offset is the confidence: on an image
   that was never compressed it is negative (no lattice explains real-valued coefficients better
   than chance), on a JPEG it grows with the number of non-zero coefficients.
4. **Quality.** The steps found are mapped to the lowest IJG quality whose table is nowhere
   coarser than them: a model trained for coarser steps than the image had smooths away real
   detail, one trained for finer steps only does less. For an IJG-scaled table this is the
   quality itself; for other tables (cameras, Photoshop, mozjpeg-style encoders, flat tables) it
   is the strongest IJG quality that is safe for them.

Everything works on a bounded sample of blocks, so the cost does not grow with the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from arcnn.quality import ijg_tables

DCT = np.array([[np.sqrt((1 if u == 0 else 2) / 8) * np.cos((2 * x + 1) * u * np.pi / 16)
                  for x in range(8)] for u in range(8)], dtype=np.float32)
"""The orthonormal 8x8 DCT-II matrix: JPEG's forward DCT is exactly this transform."""

_ZIGZAG = sorted(range(64), key=lambda i: (i // 8 + i % 8, i // 8 if (i // 8 + i % 8) % 2 else i % 8))
"""Natural-order indices of the 64 frequencies in JPEG's zigzag (low to high frequency)."""

FREQUENCIES = tuple(_ZIGZAG[1:16])
"""The AC frequencies whose steps are estimated: the 15 lowest, which hold nearly all non-zero
coefficients of a photo and so nearly all of a JPEG's distortion."""

STEPS = np.arange(2, 161, dtype=np.float32)
"""Candidate steps. 1 is no quantisation at all at 8-bit precision; IJG q5 reaches 160 on the
frequencies estimated."""

NOISE_LEVELS = ((0.6, 2.0), (1.5, 8.0), (3.0, 16.0))
"""(standard deviation, smallest step it may be used with), in DCT units: what moves a decoded
coefficient off its lattice point. 0.6 covers the decoder's rounding to 8 bits (0.29), the colour
conversion to RGB and back (about 0.2) and libjpeg's integer IDCT (residuals of BSDS500 val colour
JPEGs measure 0.35-0.5); 1.5 and 3.0 a later save at a higher quality (its own rounding error,
about a third of its steps), allowed only on steps at least 5 noise widths wide."""

OUTLIERS = 0.05
"""Share of coefficients allowed off the lattice (clipping, edges of the sampled region): it
bounds what one outlier costs a step's score."""

MIN_COEFFICIENTS = 30
"""A frequency's step is estimated only from at least this many non-zero coefficients."""

SCREEN, SCREEN_BLOCKS = 3, 160
"""A grid is first read on its 3 lowest frequencies in 256 of its blocks, and given up there if
they show no lattice (:func:`read_grid`)."""

PROFILE_LINES = 512
"""Rows (columns) the blockiness profile of the columns (rows) is taken over."""

MAX_VALUES = 160
"""Coefficients per frequency the steps are scored on: a low frequency of a photo has hundreds
that are not zero, and 256 place its step as well as all of them (the sums are scaled back)."""

MAX_BLOCKS = 1024
"""Blocks sampled per candidate offset: enough for every estimated frequency of a photo, and a
cost that stays the same on a 12 MP image as on a thumbnail."""

MIN_EVIDENCE = 1.0
"""Log-likelihood ratio per sampled block above which the image counts as a JPEG (its history is
read). Never-compressed photos score below 0 (docs/model-choice.md has the measured
distribution); a q90 JPEG scores about 2-4, a q30 one 10 or more."""


@dataclass(frozen=True)
class History:
    """What the pixels say about an image's JPEG compression.

    ``jpeg``: the dominant compression was found; then ``offset`` is its 8x8 grid (row, column
    of the first full block), ``quality`` the IJG quality of equal strength, ``ijg`` whether the
    steps are an IJG-scaled table's (within rounding), ``steps`` the step of each estimated
    frequency (natural order index -> step) and ``counts`` how many non-zero coefficients it
    was read from. ``evidence`` is the log-likelihood ratio per block.
    """

    jpeg: bool
    evidence: float
    offset: tuple[int, int] = (0, 0)
    quality: int | None = None
    ijg: bool = False
    steps: dict[int, int] = field(default_factory=dict, compare=False)
    counts: dict[int, int] = field(default_factory=dict, compare=False)
    """Non-zero coefficients each estimated frequency had (the weight of its step)."""

    @property
    def strength(self) -> float | None:
        """The geometric mean of the steps read (:func:`strength` of a table, on what was seen)."""
        return float(np.exp(np.mean(np.log(list(self.steps.values()))))) if self.steps else None

    def describe(self) -> str:
        """For the per-file line: ``JPEG ~q30 at offset (3,3)``, or that none was found."""
        if not self.jpeg:
            return "no JPEG grid"
        where = f"at offset ({self.offset[0]},{self.offset[1]})"
        if self.ijg:
            return f"JPEG ~q{self.quality} {where}"
        return f"JPEG, non-IJG tables, strength {self.strength:.1f} (~q{self.quality}) {where}"


def luma(rgb: np.ndarray) -> np.ndarray:
    """JFIF full-range Y (what a JPEG encoder quantised) of an H x W x 3 or H x W uint8 image."""
    if rgb.ndim == 2:
        return rgb.astype(np.float32)
    rgb = rgb[..., :3].astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def phase_strengths(y: np.ndarray, axis: int) -> np.ndarray:
    """Blockiness by grid phase along ``axis``: for p in 0..7, how much larger the pixel
    differences across the boundary before column (row) 8k + p are than those beside it."""
    across = y.shape[1 - axis]  # lines along the other axis: a sample of them is enough
    lines = np.unique(np.linspace(0, across - 1, min(across, PROFILE_LINES)).astype(int))
    sample = (y[:, lines] if axis == 0 else y[lines]).astype(np.float32)
    diffs = np.abs(np.diff(sample, axis=axis))
    n = diffs.shape[axis] // 8 * 8
    if n < 16:
        return np.zeros(8, dtype=np.float32)
    diffs = diffs.take(np.arange(n), axis=axis)
    profile = np.moveaxis(diffs, axis, -1).reshape(-1, n // 8, 8).mean(axis=(0, 1))
    excess = profile - 0.5 * (np.roll(profile, 1) + np.roll(profile, -1))
    return np.roll(excess, 1)  # diffs[i] is the boundary before pixel i + 1


def _strong_phases(strengths: np.ndarray) -> list[int]:
    """The strongest phase, and the second if it is at least half as strong (a second grid)."""
    first, second = (int(p) for p in np.argsort(-strengths)[:2])
    return [first, second] if strengths[second] >= 0.5 * strengths[first] else [first]


def candidate_offsets(y: np.ndarray) -> list[tuple[int, int]]:
    """The file's grid (0, 0) and the pairs of the blockiest row and column phases (the second
    of each only when it is at least half as blocky as the first: the grid of another save)."""
    rows, cols = _strong_phases(phase_strengths(y, 0)), _strong_phases(phase_strengths(y, 1))
    offsets = [(0, 0)] + [(r, c) for r in rows for c in cols]
    return list(dict.fromkeys(offsets))


def block_coefficients(y: np.ndarray, offset: tuple[int, int], max_blocks: int = MAX_BLOCKS) -> np.ndarray:
    """DCT coefficients (blocks x 64, natural order, level-shifted by 128 as JPEG does) of the
    unclipped 8x8 blocks on the grid at ``offset``, taken from evenly spaced block rows and
    columns so that about ``max_blocks`` are read whatever the image size."""
    dy, dx = offset
    rows, cols = (y.shape[0] - dy) // 8, (y.shape[1] - dx) // 8
    if rows < 1 or cols < 1:
        return np.zeros((0, 64), dtype=np.float32)
    keep = min(1.0, np.sqrt(max_blocks / (rows * cols)))
    pick_rows = np.unique(np.linspace(0, rows - 1, max(1, round(rows * keep))).astype(int))
    pick_cols = np.unique(np.linspace(0, cols - 1, max(1, round(cols * keep))).astype(int))
    grid = y[dy:dy + 8 * rows, dx:dx + 8 * cols].reshape(rows, 8, cols, 8)
    blocks = grid[pick_rows][:, :, pick_cols].transpose(0, 2, 1, 3).reshape(-1, 8, 8).astype(np.float32)
    unclipped = (blocks.min(axis=(1, 2)) > 0.5) & (blocks.max(axis=(1, 2)) < 254.5)
    return (DCT @ (blocks[unclipped] - 128.0) @ DCT.T).reshape(-1, 64)


def step_scores(values: np.ndarray) -> np.ndarray:
    """Summed log-likelihood ratio of each candidate step in :data:`STEPS` for one frequency's
    coefficients: "a multiple of the step plus Gaussian noise" (with :data:`OUTLIERS`) against a
    uniform residual, over the coefficients the step does not quantise to zero.

    The noise is the smallest of :data:`NOISE_LEVELS` the step is large enough for: a re-save
    at a higher quality moves the first save's coefficients by up to half its own steps, so a
    coarse step may be scored with more noise; a fine one never (on a never-compressed photo a
    step of a few noise widths would fit anything). The mixture's log is taken as the larger of
    its two terms (they differ by orders of magnitude wherever it matters), which keeps the
    sums to multiply-adds.
    """
    values = values[np.argsort(-np.abs(values))]  # largest first: a step counts a prefix
    magnitudes = np.abs(values)
    scores = np.full(len(STEPS), -np.inf, dtype=np.float64)
    if len(values) < MIN_COEFFICIENTS:
        return scores
    steps = STEPS[STEPS <= 2 * magnitudes[MIN_COEFFICIENTS - 1]]  # larger leave too few non-zero
    if steps.size == 0:
        return scores
    residual = values[None, :] - steps[:, None] * np.rint(values[None, :] * (1 / steps)[:, None])
    squared = np.square(residual, out=residual)
    ratio = None
    for noise, smallest in NOISE_LEVELS:  # steps ascend: each level applies to a suffix of rows
        first = int(np.searchsorted(steps, smallest))
        peak = np.log((1 - OUTLIERS) * steps[first:] / (noise * np.sqrt(2 * np.pi)))[:, None]
        level = peak - squared[first:] * np.float32(0.5 / noise ** 2)
        if ratio is None:
            ratio = level
        else:
            np.maximum(ratio[first:], level, out=ratio[first:])
    np.maximum(ratio, np.float32(np.log(OUTLIERS)), out=ratio)
    counted = len(values) - np.searchsorted(magnitudes[::-1], steps / 2)  # |c| >= step / 2
    sums = np.cumsum(ratio, axis=1)[np.arange(steps.size), np.maximum(counted, 1) - 1]
    sums[counted < MIN_COEFFICIENTS] = -np.inf
    scores[: steps.size] = sums
    return scores


@dataclass(frozen=True)
class GridReading:
    """The steps found at one grid offset: frequency -> (step, non-zero coefficients), and the
    evidence (summed best log-likelihood ratios per block)."""

    offset: tuple[int, int]
    steps: dict[int, tuple[int, int]]
    evidence: float


def _sampled(values: np.ndarray) -> tuple[np.ndarray, float]:
    """At most :data:`MAX_VALUES` of a frequency's coefficients that any step counts (|c| >= 1),
    evenly spread, and the factor that scales sums over them back to all of them."""
    eligible = values[np.abs(values) >= 1.0]
    if eligible.size <= MAX_VALUES:
        return eligible, 1.0
    return eligible[np.linspace(0, eligible.size - 1, MAX_VALUES).astype(int)], eligible.size / MAX_VALUES


def _best_step(values: np.ndarray) -> tuple[int, float, int] | None:
    """(step, summed log-likelihood ratio, non-zero coefficients) of the best step for one
    frequency, or None when no step beats chance."""
    sample, scale = _sampled(values)
    scores = step_scores(sample)
    best = int(np.argmax(scores))
    if not scores[best] > 0:
        return None
    step = int(STEPS[best])
    return step, float(scores[best]) * scale, int(np.sum(np.abs(values) >= step / 2))


def read_grid(y: np.ndarray, offset: tuple[int, int], max_blocks: int = MAX_BLOCKS) -> GridReading:
    """Estimate the quantisation steps of the grid at ``offset`` (:func:`step_scores`).

    The lowest :data:`SCREEN` frequencies of a sample of the blocks are read first: they hold
    most non-zero coefficients, so a grid with no lattice there (every grid of a never-compressed
    photo, the wrong grids of a JPEG) is given up before the rest is read.
    """
    screen = block_coefficients(y, offset, SCREEN_BLOCKS)
    if len(screen) < MIN_COEFFICIENTS:
        return GridReading(offset, {}, -np.inf)
    evidence = sum(best[1] for f in FREQUENCIES[:SCREEN] if (best := _best_step(screen[:, f])))
    if evidence / len(screen) < MIN_EVIDENCE / 4:
        return GridReading(offset, {}, evidence / len(screen))
    coefficients = block_coefficients(y, offset, max_blocks)
    steps, total = {}, 0.0
    for f in FREQUENCIES:
        best = _best_step(coefficients[:, f])
        if best is not None:
            steps[f] = (best[0], best[2])
            total += best[1]
    return GridReading(offset, steps, total / len(coefficients))


def strength(table: list[float] | np.ndarray) -> float:
    """How coarse a quantisation table is where photos have their coefficients: the geometric
    mean step over :data:`FREQUENCIES` (natural order table). IJG q90 is 3.1, q50 15.6, q10 78."""
    return float(np.exp(np.mean(np.log(np.asarray(table, dtype=np.float64)[list(FREQUENCIES)]))))


@dataclass(frozen=True)
class QualityFit:
    """The IJG quality of equal strength for some steps, and whether they are IJG's own."""

    quality: int
    ijg: bool


_TABLES = ijg_tables()[0].astype(np.float64)


MISREAD_SHARE = 0.15
"""Share of the steps' weight allowed to be finer than the chosen table (:func:`equivalent_quality`):
in a re-save, a low frequency is sometimes read at the later save's step."""


def equivalent_quality(steps: dict[int, tuple[int, int]], misread_share: float = MISREAD_SHARE) -> QualityFit:
    """The IJG quality (1-100) of the strongest table that is nowhere coarser than ``steps``
    (frequency -> (step, weight)). Steps under half the table's are taken as misread (a re-save's
    finer step read in place of the first save's) if they hold at most ``misread_share`` of
    the weight: one misread step must not decide (steps read from a file are exact: 0). ``ijg`` when that table matches every other
    step within 5% + 1 (the steps are an IJG-scaled table's).

    Nowhere coarser, because a model trained on coarser steps than the image had removes real
    detail at those frequencies (a flat table of 10s, restored as the IJG quality of equal mean
    step, lost 4 dB), while one trained on finer steps only does less."""
    freqs = np.array(list(steps), dtype=int)
    found = np.array([steps[f][0] for f in freqs], dtype=np.float64)
    weights = np.array([steps[f][1] for f in freqs], dtype=np.float64)
    tables = _TABLES[:, freqs]
    coarser = tables > found[None, :] + 0.5
    misread = tables > 2 * found[None, :]  # the step of a later, finer save
    fits = ~np.any(coarser & ~misread, axis=1) & (misread @ weights <= misread_share * weights.sum())
    quality = int(np.argmax(fits)) + 1 if fits.any() else 100
    table, kept = _TABLES[quality - 1, freqs], ~misread[quality - 1]
    return QualityFit(quality, bool(np.all(np.abs(table - found)[kept] <= 0.05 * found[kept] + 1)))


def read_history(pixels: np.ndarray, max_blocks: int = MAX_BLOCKS) -> History:
    """The dominant JPEG compression in ``pixels`` (H x W x 3 RGB or H x W grey, uint8).

    A grid counts when it has enough evidence and a step on at least two of the three lowest AC
    frequencies, which every JPEG below q95 quantises visibly (a JPEG scaled by two keeps a
    partial lattice on a few even frequencies: that is not a JPEG grid). Among the grids that
    count, the one read as the lowest quality wins: in a re-saved photo, the earlier, stronger
    compression is what the artifacts come from.
    """
    y = np.asarray(pixels)
    y = y if y.ndim == 2 else luma(y)
    if min(y.shape) < 16:
        return History(False, 0.0)
    readings = [read_grid(y, offset, max_blocks) for offset in candidate_offsets(y)]
    best = max(readings, key=lambda r: r.evidence)
    found = [r for r in readings if r.evidence >= MIN_EVIDENCE and len(set(r.steps) & set(FREQUENCIES[:SCREEN])) >= 2]
    if not found:
        return History(False, float(best.evidence) if np.isfinite(best.evidence) else 0.0)
    fits = {r.offset: equivalent_quality(r.steps) for r in found}
    dominant = min(found, key=lambda r: (fits[r.offset].quality, -r.evidence))
    fit = fits[dominant.offset]
    return History(True, round(float(dominant.evidence), 3), dominant.offset, fit.quality, fit.ijg,
                   {f: s for f, (s, _) in dominant.steps.items()}, {f: n for f, (_, n) in dominant.steps.items()})
