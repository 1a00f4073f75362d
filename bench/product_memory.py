"""Peak memory of the product path per pixel: a JPEG file in, an encoded image out, as ``arcnn
restore`` does it (decode with the quality estimate, ``auto``'s choice of models, restore, encode).

Each case runs in a fresh process that loads the models, warms up on a small JPEG of the same
kind (so the thread pools and model weights are in place), then records its resident set size
(the process's own footprint), restores the large JPEG and reports its maximum resident set size.
What restoring adds, divided by the pixels, is the per-pixel cost; the tile-bounded feature maps
are part of it at the first size and do not grow with the image, so the slope between two sizes
is the image-proportional part alone.

    python -m bench.product_memory --megapixels 12,48 --modes RGB,L

A worker holds ``ARCNN_IO_THREADS``-many images being decoded or encoded beside the ones being
restored, so its peak is roughly footprint + (in-flight images) x (bytes per pixel) x (pixels):
docs/performance.md works the formula out with these figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import arguments, table, write


def photo_like(megapixels: float, mode: str, seed: int = 0):
    """A synthetic photo (smooth shading, edges, fine texture, noise) of about ``megapixels``, 3:2,
    built band by band so that building it does not set the peak being measured."""
    from PIL import Image

    width = int((megapixels * 1e6 * 1.5) ** 0.5)
    height = int(megapixels * 1e6 / width)
    channels = 3 if mode == "RGB" else 1
    out = np.empty((height, width, channels), np.uint8)
    rng = np.random.default_rng(seed)
    xx = np.arange(width, dtype=np.float32)[None, :]
    for top in range(0, height, 256):
        yy = np.arange(top, min(top + 256, height), dtype=np.float32)[:, None]
        for c in range(channels):
            shade = 128 + 60 * np.sin(xx / (300 + 40 * c)) * np.cos(yy / 220)
            edges = 40 * (((xx // 97 + yy // 61 + c) % 2) - 0.5)
            texture = 12 * np.sin(xx / 3.1 + c) * np.sin(yy / 2.7)
            noise = rng.normal(0, 4, (len(yy), width))
            out[top:top + len(yy), :, c] = np.clip(shade + edges + texture + noise, 0, 255)
    return Image.fromarray(out[..., 0] if channels == 1 else out, mode)


def jpeg_file(path: Path, megapixels: float, mode: str, quality: int) -> None:
    photo_like(megapixels, mode).save(path, "JPEG", quality=quality)


def rss_mib(field: str = "VmRSS") -> float:
    """This process's resident set size (``VmRSS``) or its peak so far (``VmHWM``), from Linux /proc.

    The peak is read here, not from ``ru_maxrss``: that one survives exec, so a child process
    started by a parent holding a large image reports the parent's size as its own peak (this
    benchmark's parent builds 48 MP photos; a grey child once "peaked" at 606 MiB that way,
    against its own 452)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(big: Path, small: Path, tier: str, precision: str, tile: int) -> dict:
    from arcnn.images import decode_image, encode_image
    from arcnn.restoration import Restorer

    restorer = Restorer("auto", device="cpu", precision=precision, tier=tier, tile=tile)

    def run(path: Path) -> tuple[str, tuple[int, int], int]:
        img = decode_image(path.read_bytes(), max_pixels=1 << 34)
        choice = restorer.choose(img)
        out = restorer.restore(img, choice)
        return choice.label, img.size, len(encode_image(out, "png", source=img))

    run(small)
    footprint = rss_mib()
    start = time.perf_counter()
    label, (w, h), size = run(big)
    seconds = time.perf_counter() - start
    peak = rss_mib("VmHWM")
    pixels = w * h
    return {"megapixels": round(pixels / 1e6, 2), "size": f"{w}x{h}", "applied": label, "tier": tier, "tile": tile,
            "precision": restorer.precision, "footprint_mib": round(footprint), "peak_mib": round(peak),
            "added_mib": round(peak - footprint), "bytes_per_pixel": round((peak - footprint) * 2**20 / pixels, 1),
            "seconds": round(seconds, 1), "png_bytes": size}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--megapixels", default="12,48", help="image sizes, comma-separated")
    parser.add_argument("--modes", default="RGB,L", help="RGB (colour JPEG 4:2:0) and/or L (grey JPEG)")
    parser.add_argument("--quality", type=int, default=20, help="JPEG quality of the inputs")
    parser.add_argument("--tier", default="standard", help="standard or fast")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--tile", type=int, default=0, help="tile side (0: the default, 384 on CPUs)")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.tier, args.precision, args.tile)))
        return
    sizes = [0.05] if args.quick else [float(m) for m in args.megapixels.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            small = Path(tmp) / f"small-{mode}.jpg"
            jpeg_file(small, 0.02, mode, args.quality)
            for mp in sizes:
                big = Path(tmp) / f"{mp}-{mode}.jpg"
                jpeg_file(big, mp, mode, args.quality)
                proc = subprocess.run([sys.executable, "-m", "bench.product_memory", "--child", str(big), str(small),
                                       "--tier", args.tier, "--precision", args.precision,
                                       "--tile", str(args.tile)],
                                      capture_output=True, text=True, check=True)
                rows.append({"mode": mode, **json.loads(proc.stdout.strip().splitlines()[-1])})
                print(f"  {mode} {mp} MP: {rows[-1]['bytes_per_pixel']} B/px, peak {rows[-1]['peak_mib']} MiB",
                      flush=True)
                big.unlink()
    for mode in args.modes.split(","):
        pair = [r for r in rows if r["mode"] == mode]
        if len(pair) >= 2:
            a, b = pair[0], pair[-1]
            slope = (b["added_mib"] - a["added_mib"]) * 2**20 / ((b["megapixels"] - a["megapixels"]) * 1e6)
            print(f"  {mode}: image-proportional part {slope:.1f} B/px (slope from {a['megapixels']} to {b['megapixels']} MP)")
    print(table(rows, ["mode", "size", "megapixels", "applied", "tile", "precision", "footprint_mib", "peak_mib",
                       "added_mib", "bytes_per_pixel", "seconds"]))
    print(f"wrote {write('product_memory', args.json, {'rows': rows})}")


if __name__ == "__main__":
    main()
