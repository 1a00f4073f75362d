"""Side by side, in one run: what a user would write vs. our path, for AR-CNN at several sizes.

``plain``: the PyTorch AR-CNN module run once on the whole replicate-padded image (float32,
default threads) -- :func:`arcnn.tiling.restore_whole`. ``ours``: what :class:`Restorer` runs --
the prepared model through the tiled engine, tile 512 -- in float32 and, where the CPU has native
bf16, in bf16. Ours must not be slower at any size: in raw speed, nor at equal floor (the ratio of the two
rows' fractions of the floor sampled beside them, which a shared machine does not skew).
"""

from __future__ import annotations

import numpy as np

from arcnn.acceleration import cpu_has_bf16, prepare
from arcnn.tiling import restore_plane, restore_whole
from bench.harness import Floor, arguments, shipped_like, table, throughput_row, timed, write


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--sizes", default="256,512,1024,2048")
    parser.add_argument("--arch", default="arcnn")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats = "48", 1
    model = shipped_like(args.arch)
    ours = {"ours fp32": prepare(model, "cpu", "fp32")}
    if cpu_has_bf16():
        ours["ours bf16"] = prepare(model, "cpu", "bf16")
    floor = Floor(n=256 if args.quick else 2048)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        plane = np.random.default_rng(size).integers(0, 256, (size, size), dtype=np.uint8)
        seconds, beside = timed(lambda: restore_whole(model, plane), args.repeats, floor)
        plain = throughput_row(size * size, seconds, model.macs_per_pixel, beside)
        rows.append({"size": f"{size}x{size}", "path": "plain", **plain, "speedup": 1.0, "speedup_at_equal_floor": 1.0})
        for name, net in ours.items():
            seconds, beside = timed(lambda: restore_plane(net, plane, args.tile), args.repeats, floor)
            row = throughput_row(size * size, seconds, model.macs_per_pixel, beside)
            rows.append({"size": f"{size}x{size}", "path": name, **row, "speedup": row["mp_per_s"] / plain["mp_per_s"],
                         "speedup_at_equal_floor": row["of_fp32_floor"] / plain["of_fp32_floor"]})
        for r in rows[-1 - len(ours):]:
            print(f"  {r['size']} {r['path']}: {r['mp_per_s']:.3f} MP/s (x{r['speedup']:.2f})", flush=True)
    slower = [r for r in rows if r["path"] != "plain" and min(r["speedup"], r["speedup_at_equal_floor"]) < 1.0]
    print(f"\n{args.arch} (random weights, residual), tile {args.tile}, best of {args.repeats}; floor sampled beside each row")
    print(table(rows, ["size", "path", "mp_per_s", "gflops", "floor_fp32_gflops", "of_fp32_floor", "speedup",
                       "speedup_at_equal_floor"]))
    print("\nours is " + ("slower than plain at: " + ", ".join(f"{r['size']} {r['path']}" for r in slower)
                         if slower else "not slower than plain at any size"))
    path = write("side_by_side", args.json, {"architecture": args.arch, "tile": args.tile, "repeats": args.repeats,
                                             "rows": rows, "ours_slower_anywhere": bool(slower)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
