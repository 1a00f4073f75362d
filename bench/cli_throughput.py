"""End-to-end throughput of the ``arcnn restore`` command on a folder of real photos.

Kodak24 (24 photos, 768 x 512) is JPEG-compressed at quality 10 with Pillow into a temporary
folder (dataset images are never committed), then ``arcnn restore FOLDER -o OUT`` runs as a user
would run it: decoding, colour conversion, restoration, PNG encoding, writing. Start-up (Python,
torch, model load) is measured separately on a one-pixel-row image and reported beside
(not in --quick mode, which only checks that the command runs).

``--chroma passthrough,restore`` runs each model without and with the chroma network, so the
colour path's cost over the Y-only path is one command:

    python -m bench.cli_throughput --models jpeg-q10,jpeg-q40 --chroma passthrough,restore
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from arcnn.model_names import CHROMA_MODEL
from arcnn.registry import load_named
from bench.harness import Floor, arguments, table, throughput_row, timed_restore, write

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "Kodak24"


def make_folder(source: Path | None, folder: Path, quality: int = 10) -> int:
    """JPEG q``quality`` copies of ``source``'s images (or three small synthetic ones); pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    if source is None:
        rng = np.random.default_rng(0)
        images = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(3)]
    else:
        images = [Image.open(p).convert("RGB") for p in sorted(source.glob("*.png"))]
    for i, img in enumerate(images):
        img.save(folder / f"{i:03d}.jpg", quality=quality)
    return sum(img.width * img.height for img in images)


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--data", type=Path, default=KODAK, help="folder of PNG photos")
    parser.add_argument("--models", default="random:9-7-1-5,random:fast-arcnn")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quality", type=int, default=10, help="JPEG quality of the inputs")
    parser.add_argument("--chroma", default="passthrough",
                        help="comma-separated --chroma modes to run each model with (passthrough: Y only; "
                             "restore: the chroma network too)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.models = 1, "random:9-1-5"
    floor = Floor(n=256 if args.quick else 2048)
    rows = []
    with tempfile.TemporaryDirectory(prefix="arcnn-bench-") as tmp:
        tmp = Path(tmp)
        pixels = make_folder(None if args.quick else args.data, tmp / "photos", args.quality)
        one = tmp / "one"
        one.mkdir()
        Image.new("RGB", (32, 1)).save(one / "tiny.jpg", quality=10)
        runs = [(m, c) for m in args.models.split(",") for c in args.chroma.split(",")]
        for model, chroma in runs:
            startup = None if args.quick else min(timed_restore(one, tmp / "out-one", "--model", model, "--chroma", chroma)
                                                  for _ in range(args.repeats))
            best, beside = float("inf"), {}
            for _ in range(args.repeats):
                for k, v in floor.sample().items():
                    beside[k] = max(beside.get(k, 0.0), v)
                best = min(best, timed_restore(tmp / "photos", tmp / "out", "--model", model, "--chroma", chroma))
            macs = load_named(model)[0].macs_per_pixel
            if chroma == "restore":
                macs += load_named(CHROMA_MODEL)[0].macs_per_pixel
            rows.append({"model": model, "chroma": chroma, "images": len(list((tmp / "photos").glob("*.jpg"))), "megapixels": pixels / 1e6,
                         "seconds": best, "startup_seconds": startup,
                         **throughput_row(pixels, best, macs, beside),
                         "steady_mp_per_s": None if startup is None else pixels / max(best - startup, 1e-9) / 1e6})
            print(f"  {model} --chroma {chroma}: {rows[-1]['mp_per_s']:.3f} MP/s end to end", flush=True)
    print(f"\narcnn restore on {'synthetic images' if args.quick else args.data} (JPEG q{args.quality}), "
          f"best of {args.repeats}")
    print(table(rows, ["model", "chroma", "images", "megapixels", "seconds", "startup_seconds", "mp_per_s",
                       "steady_mp_per_s", "floor_fp32_gflops", "of_fp32_floor"]))
    path = write("cli_throughput", args.json, {"data": "synthetic" if args.quick else str(args.data), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
