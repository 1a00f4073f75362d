"""Peak memory restoring one large image (default 50 MP, tile 512), each case in a fresh process.

The child loads the model, builds a grayscale (or RGB) image of the given size, restores it through
:class:`Restorer` (the product path: image in, image out) and reports its maximum resident set
size before and after. Tiling bounds the network's feature maps by the tile; what remains
proportional to the image is the image itself and its float32 output plane.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.harness import arguments, table, write
from bench.product_memory import rss_mib


def child(megapixels: float, tile: int, model: str, precision: str, mode: str) -> dict:
    import numpy as np
    from PIL import Image

    from arcnn.restoration import Restorer

    restorer = Restorer.load(model, device="cpu", tile=tile, precision=precision)
    side = int((megapixels * 1e6) ** 0.5)
    height, width = side, int(megapixels * 1e6 / side)
    rng = np.random.default_rng(0)
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    before = rss_mib("VmHWM")
    start = time.perf_counter()
    restorer.restore(img)
    seconds = time.perf_counter() - start
    peak = rss_mib("VmHWM")
    return {"megapixels": height * width / 1e6, "shape": f"{height}x{width}", "mode": mode, "tile": tile, "model": model,
            "precision": precision, "rss_before_mib": before, "peak_rss_mib": peak,
            "restore_added_mib": peak - before, "seconds": seconds,
            "mp_per_s": height * width / seconds / 1e6}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--megapixels", type=float, default=50.0)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--model", default="random:9-7-1-5", help="random:9-7-1-5 is AR-CNN, residual like the bundled models")
    parser.add_argument("--precisions", default="fp32")
    parser.add_argument("--modes", default="L", help="image modes to restore: L (grayscale), RGB (Y restored, "
                                                     "colour converted both ways), or both: L,RGB")
    parser.add_argument("--child", action="store_true", help="internal: measure in this process")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.megapixels, args.tile, args.model, args.precisions, args.modes)))
        return
    if args.quick:
        args.megapixels = 0.05
    rows = []
    for mode in args.modes.split(","):
        for precision in args.precisions.split(","):
            proc = subprocess.run([sys.executable, "-m", "bench.peak_memory", "--child", "--megapixels",
                                   str(args.megapixels), "--tile", str(args.tile), "--model", args.model,
                                   "--precisions", precision, "--modes", mode],
                                  capture_output=True, text=True, check=True)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  {mode} {precision}: peak {rows[-1]['peak_rss_mib']:.0f} MiB", flush=True)
    print(table(rows, ["shape", "mode", "megapixels", "tile", "precision", "rss_before_mib", "peak_rss_mib",
                       "restore_added_mib", "seconds", "mp_per_s"]))
    path = write("peak_memory", args.json, {"rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
