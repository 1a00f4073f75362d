"""How well, and at what cost, :mod:`arcnn.history` reads compression history from pixels.

Every ground-truth image goes through each case below; the decoded pixels alone (no file tables)
are given to :func:`arcnn.history.read_history`:

* ``pristine``: the ground truth itself: any detection is a false positive (a ruined photo);
* ``scaled JPEG``: a q30 JPEG of the image at twice the size, scaled down by two: the grid is
  gone, so a detection there is a false positive too;
* ``qN``: one JPEG save at IJG quality N (4:2:0), and the same cropped by (3, 5) pixels;
* ``qA > qB``: re-saved at a higher quality, aligned and after a 3-pixel crop;
* ``flat`` / ``ramp`` tables: tables no IJG quality produces (their quality is not scored).

Reported per case: detection rate, offset right, mean and worst quality error (IJG cases), and
the estimator's time per image, and its time on a q30 JPEG of each image beside the fast tier's
restore time of that JPEG (``--tier fast``, the defaults: the target is at most 10%).

    python -m bench.history_estimator ../shared/data/Kodak24
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from arcnn.evaluation import FLAT_TABLE, RAMP_TABLE, jpeg_bytes
from arcnn.history import read_history
from arcnn.images import codec_roundtrip, decode_image, list_images
from arcnn.restoration import Restorer
from bench.harness import arguments, table, write


def _jpeg(img: Image.Image, quality: int | None = None, **params: object) -> Image.Image:
    return codec_roundtrip(img, "JPEG", **({"quality": quality} if quality else {}), **params).convert("RGB")


Case = tuple[str, Callable[[Image.Image], Image.Image], int | None, tuple[int, int] | None]
"""(name, degradation, true quality or None (no IJG quality / no JPEG), true grid offset or None)."""


def _crop(img: Image.Image, dx: int, dy: int) -> Image.Image:
    return img.crop((dx, dy, img.width, img.height))


def cases() -> list[Case]:
    rows: list[Case] = [("pristine", lambda im: im, None, None),
                        ("scaled JPEG (q30 at 2x, / 2)",
                         lambda im: _jpeg(im.resize((2 * im.width, 2 * im.height), Image.BICUBIC), 30)
                         .resize(im.size, Image.BOX), None, None)]
    for q in (10, 20, 30, 40, 50, 60, 70, 80, 90):
        rows.append((f"q{q}", lambda im, q=q: _jpeg(im, q), q, (0, 0)))
    for q in (20, 50):
        rows.append((f"q{q} cropped (3, 5)", lambda im, q=q: _crop(_jpeg(im, q), 5, 3), q, (5, 3)))
    rows += [("q30 > q90", lambda im: _jpeg(_jpeg(im, 30), 90), 30, (0, 0)),
             ("q30 > crop 3 > q90", lambda im: _jpeg(_crop(_jpeg(im, 30), 3, 3), 90), 30, (5, 5)),
             ("q50 > q95", lambda im: _jpeg(_jpeg(im, 50), 95), 50, (0, 0)),
             ("q40 > crop 5 > q85", lambda im: _jpeg(_crop(_jpeg(im, 40), 5, 5), 85), 40, (3, 3)),
             ("flat tables (10)", lambda im: _jpeg(im, qtables=[FLAT_TABLE, FLAT_TABLE]), None, (0, 0)),
             ("ramp tables (6-34)", lambda im: _jpeg(im, qtables=[RAMP_TABLE, RAMP_TABLE]), None, (0, 0))]
    return rows


def fast_tier_seconds(restorer: Restorer, decoded: Image.Image) -> float:
    """Best of two: the fast tier restoring this decoded JPEG as ``arcnn restore`` would (its
    choice, and so its history reading, made beforehand)."""
    choice = restorer.choose(decoded)
    best = np.inf
    for _ in range(2):
        start = time.perf_counter()
        restorer.restore(decoded, choice)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--images", type=int, default=None)
    args = parser.parse_args()
    truths = []
    for path in list_images([args.data])[: args.images]:
        with Image.open(path) as img:
            truths.append(img.convert("RGB"))
    rows, costs = [], []
    for name, degrade, quality, offset in cases():
        found, right_offset, errors = 0, 0, []
        for truth in truths:
            pixels = np.asarray(degrade(truth))
            start = time.perf_counter()
            history = read_history(pixels)
            costs.append(time.perf_counter() - start)
            found += history.jpeg
            if history.jpeg and offset is not None:
                right_offset += history.offset == offset
            if history.jpeg and quality is not None:
                errors.append(history.quality - quality)
        jpeg = offset is not None
        rows.append({"case": name, "images": len(truths),
                     "detected": f"{found}/{len(truths)}" + ("" if jpeg else " (false positives)"),
                     "offset right": f"{right_offset}/{found}" if jpeg and found else "",
                     "mean |q error|": f"{np.mean(np.abs(errors)):.2f}" if errors else "",
                     "worst q error": f"{max(errors, key=abs):+d}" if errors else ""})
    fast = Restorer("auto", "cpu", tier="fast")
    ratios = []
    for truth in truths:  # on the q30 JPEG the fast tier restores: a pristine image is cheaper to read
        decoded = decode_image(jpeg_bytes(truth, 30), 10**9)
        pixels = np.asarray(decoded.convert("RGB"))
        estimate = min(_timed(lambda: read_history(pixels)) for _ in range(3))
        ratios.append(estimate / fast_tier_seconds(fast, decoded))
    columns = ["case", "images", "detected", "offset right", "mean |q error|", "worst q error"]
    print(table(rows, columns))
    summary = {"estimator_ms_median": 1000 * float(np.median(costs)), "estimator_ms_max": 1000 * float(np.max(costs)),
               "share_of_fast_tier_median": float(np.median(ratios)), "share_of_fast_tier_max": float(np.max(ratios)),
               "fast_tier_precision": fast.precision}
    print(f"\nestimator: median {summary['estimator_ms_median']:.1f} ms, max {summary['estimator_ms_max']:.1f} ms "
          f"per image; share of the fast tier's restore time ({fast.precision}): median "
          f"{100 * summary['share_of_fast_tier_median']:.1f}%, worst {100 * summary['share_of_fast_tier_max']:.1f}%")
    print(write("history_estimator", args.json, {"data": str(args.data), "rows": rows, **summary}))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
