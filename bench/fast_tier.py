"""The fast tier against classical deblockers, on the same files in one run.

Every ground-truth image's studio-range Y (the paper protocol: ``arcnn eval --protocol paper``)
is saved as a greyscale JPEG at each quality into a temporary folder. Then, on those files:

* ``arcnn restore FOLDER -o OUT --tier fast`` (and ``--tier standard`` beside it), the command
  users run: one process for the folder, decoding, ``auto``'s choice, restoring, PNG writing;
* ffmpeg's ``spp`` and ``pp7`` post-processing filters (Debian's ffmpeg, optional: skipped with a
  note when absent), one ffmpeg process per file. A JPEG carries no per-block quantiser that
  ffmpeg passes to its filters, so each filter's ``qp`` is swept and the best one per quality
  *on these very images* is reported: an oracle's tuning, the best case for the classical filters.

Reported per method and quality: mean Y PSNR gain over the JPEG (dB), the worst image's gain,
and throughput in megapixels per second of wall time, with and without process start-up
(``arcnn``'s start-up, importing torch and loading models, is measured on a one-image folder;
ffmpeg's on a tiny image, times the number of files).

    python -m bench.fast_tier ../shared/data/LIVE1 --qualities 10,20
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from arcnn.images import list_images, studio_y
from arcnn.metrics import psnr
from bench.harness import arguments, table, timed_restore, write

SPP_QPS = (2, 4, 6, 8, 10, 12, 16, 20)
PP7_QPS = (2, 4, 6, 8, 10, 12, 16, 20)


def make_inputs(folder: Path, truths: dict[str, np.ndarray], quality: int) -> Path:
    out = folder / f"q{quality}"
    out.mkdir(parents=True)
    for name, y in truths.items():
        Image.fromarray(y).save(out / f"{name}.jpg", quality=quality)
    return out


def gains(truths: dict[str, np.ndarray], inputs: Path, outputs: Path) -> list[float]:
    """Y PSNR gain of each output (``<name>.png``) over its JPEG input."""
    result = []
    for name, y in truths.items():
        before = psnr(y, np.asarray(Image.open(inputs / f"{name}.jpg").convert("L")))
        after = psnr(y, np.asarray(Image.open(outputs / f"{name}.png").convert("L")))
        result.append(after - before)
    return result


def run_ffmpeg(inputs: Path, out: Path, filt: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    for path in sorted(inputs.glob("*.jpg")):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-vf", filt, "-pix_fmt", "gray",
                        str(out / f"{path.stem}.png")], check=True, capture_output=True)
    return time.perf_counter() - start


def row(method: str, quality: int, g: list[float], pixels: int, seconds: float, startup: float, files: int,
        setting: str = "") -> dict:
    return {"method": method, "setting": setting, "quality": quality, "mean_gain_db": round(float(np.mean(g)), 3),
            "worst_gain_db": round(min(g), 3), "seconds": round(seconds, 2),
            "mp_per_s": round(pixels / seconds / 1e6, 3),
            "mp_per_s_without_startup": round(pixels / max(seconds - startup * files, 1e-9) / 1e6, 3)}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("data", type=Path, nargs="?", default=Path("../shared/data/LIVE1"))
    parser.add_argument("--qualities", default="10,20")
    parser.add_argument("--tiers", default="fast,standard")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per method (best is kept)")
    args = parser.parse_args()
    if args.quick:  # synthetic photos: the run's plumbing, not a result
        from bench.product_memory import photo_like

        truths = {f"synthetic{i}": np.asarray(photo_like(0.02, "L", seed=i)) for i in range(2)}
        args.repeats, args.qualities = 1, args.qualities.split(",")[0]
    else:
        truths = {}
        for path in list_images([args.data]):
            with Image.open(path) as img:
                truths[path.stem] = studio_y(img)
    pixels = sum(y.size for y in truths.values())
    have_ffmpeg = shutil.which("ffmpeg") is not None and not args.quick
    rows = []
    with tempfile.TemporaryDirectory(prefix="arcnn-fast-tier-") as tmp:
        tmp = Path(tmp)
        tiny = tmp / "tiny"
        tiny.mkdir()
        Image.fromarray(np.full((16, 16), 128, np.uint8)).save(tiny / "tiny.jpg", quality=10)
        for q in map(int, args.qualities.split(",")):
            inputs = make_inputs(tmp, truths, q)
            for tier in args.tiers.split(","):
                startup = min(timed_restore(tiny, tmp / "out-tiny", "--tier", tier) for _ in range(args.repeats))
                seconds = min(timed_restore(inputs, tmp / "out", "--tier", tier) for _ in range(args.repeats))
                rows.append(row(f"arcnn --tier {tier}", q, gains(truths, inputs, tmp / "out"), pixels, seconds,
                                startup, 1))
                print(f"  q{q} {rows[-1]['method']}: {rows[-1]['mean_gain_db']:+.3f} dB, "
                      f"{rows[-1]['mp_per_s']} MP/s", flush=True)
            if not have_ffmpeg:
                continue
            startup = min(run_ffmpeg(tiny, tmp / "ff-tiny", "null") for _ in range(args.repeats))
            for name, template, qps in (("ffmpeg spp", "spp=quality=3:qp={qp}", SPP_QPS),
                                        ("ffmpeg pp7", "pp7=qp={qp}:mode=medium", PP7_QPS)):
                best = None
                for qp in qps:  # the oracle's tuning: the qp with the best mean gain on these images
                    run_ffmpeg(inputs, tmp / "ff", template.format(qp=qp))
                    g = gains(truths, inputs, tmp / "ff")
                    if best is None or np.mean(g) > np.mean(best[1]):
                        best = (qp, g)
                filt = template.format(qp=best[0])
                seconds = min(run_ffmpeg(inputs, tmp / "ff", filt) for _ in range(args.repeats))
                rows.append(row(name, q, best[1], pixels, seconds, startup, len(truths), f"qp={best[0]}"))
                print(f"  q{q} {name} ({filt}): {rows[-1]['mean_gain_db']:+.3f} dB, {rows[-1]['mp_per_s']} MP/s",
                      flush=True)
    if not have_ffmpeg and not args.quick:
        print("ffmpeg not found: the classical filters were skipped (apt-get install ffmpeg)")
    print(f"\n{args.data} ({len(truths)} images, {pixels / 1e6:.2f} MP), greyscale JPEG of studio Y; "
          f"best of {args.repeats} timed runs")
    print(table(rows, ["method", "setting", "quality", "mean_gain_db", "worst_gain_db", "seconds", "mp_per_s",
                       "mp_per_s_without_startup"]))
    print(f"wrote {write('fast_tier', args.json, {'data': str(args.data), 'rows': rows})}")


if __name__ == "__main__":
    main()
