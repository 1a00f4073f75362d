"""What reduced precision costs in restoration quality: PSNR / SSIM / PSNR-B of one model under
the paper protocol, run as the original float32 module, as our float32 fast path and as our
reduced-precision paths. The issue's bar for bf16 is < 0.01 dB on LIVE1 at quality 10 (the only
use of LIVE1 here: nothing is tuned on it).

``python -m bench.precision_cost ../shared/data/LIVE1 --quality 10 --model jpeg-q10``
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from arcnn.acceleration import cpu_has_bf16, prepare
from arcnn.evaluation import paper_protocol
from arcnn.registry import load_named
from bench.harness import arguments, table, write


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("data", nargs="?", type=Path, default=None)
    parser.add_argument("--quality", type=int, default=10)
    parser.add_argument("--model", default="jpeg-q10")
    parser.add_argument("--precisions", default=None,
                        help="fast paths to compare with the original (default: fp32 and every reduced one the device has)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            args.data, args.model = Path(tmp), "random:9-7-1-5"
            rng = np.random.default_rng(0)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (40, 56), dtype=np.uint8)).save(Path(tmp) / f"{i}.png")
        if args.data is None:
            parser.error("give a data folder (e.g. ../shared/data/LIVE1)")
        model, card = load_named(args.model)
        precisions = ["fp32"] + (["fp16", "bf16"] if device == "cuda" else ["bf16"] if cpu_has_bf16() else [])
        if args.precisions:
            precisions = args.precisions.split(",")
        nets = {"original fp32": model.to(device), **{f"ours {p}": prepare(model, device, p) for p in precisions}}
        rows = []
        for name, net in nets.items():
            result = paper_protocol(net, args.data, args.quality, device)
            rows.append({"path": name, **result["restored"]})
            print(f"  {name}: PSNR {result['restored']['psnr']:.4f}", flush=True)
    reference = rows[0]
    for row in rows:
        row["psnr_change_db"] = row["psnr"] - reference["psnr"]
        row["psnr_b_change_db"] = row["psnr_b"] - reference["psnr_b"]
    print(f"\n{args.model} on {args.data}, JPEG q{args.quality}, paper protocol, {device}")
    print(table(rows, ["path", "psnr", "ssim", "psnr_b"]))
    print("\n" + "\n".join(f"{r['path']}: PSNR {r['psnr_change_db']:+.5f} dB, PSNR-B {r['psnr_b_change_db']:+.5f} dB"
                           for r in rows[1:]))
    path = write("precision_cost", args.json, {"data": str(args.data), "model": args.model, "quality": args.quality,
                                               "device": device, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
