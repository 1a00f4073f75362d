"""Model-only throughput per architecture and tile size: plain model vs. our prepared paths.

"Model-only" is one luminance plane in memory, restored to a float plane: window extraction,
the network, and writing the tiles back, but no decoding, colour conversion or encoding.

Rows per architecture:

- ``whole``: the plain PyTorch model on the whole replicate-padded plane (no tiling).
- ``tiled``: the plain model through the tiled engine on one worker (all threads inside each
  convolution, as before this work): against ``whole`` it is the cost of tiling itself.
- ``ours fp32`` / ``ours bf16``: :func:`arcnn.acceleration.prepare`'s model through the tiled
  engine with its parallel single-threaded workers (bf16 only where the CPU has native bf16).
"""

from __future__ import annotations

import numpy as np

from arcnn.acceleration import cpu_has_bf16, prepare
from arcnn.tiling import restore_plane, restore_whole
from bench.harness import Floor, arguments, shipped_like, table, throughput_row, timed, write


def measure(arch: str, size: int, tiles: list[int], repeats: int, floor: Floor) -> list[dict]:
    model = shipped_like(arch)
    plane = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    paths = {"ours fp32": prepare(model, "cpu", "fp32")}
    if cpu_has_bf16():
        paths["ours bf16"] = prepare(model, "cpu", "bf16")
    rows = []

    def add(path: str, tile: int | None, fn) -> None:
        seconds, beside = timed(fn, repeats, floor)
        rows.append({"architecture": arch, "path": path, "tile": tile,
                     **throughput_row(size * size, seconds, model.macs_per_pixel, beside)})
        print(f"  {arch} {path} tile {tile}: {rows[-1]['mp_per_s']:.3f} MP/s", flush=True)

    add("whole", None, lambda: restore_whole(model, plane))
    for tile in tiles:
        add("tiled", tile, lambda: restore_plane(model, plane, tile, workers=1))
        for path, net in paths.items():
            add(path, tile, lambda: restore_plane(net, plane, tile))
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per architecture and path: the best tile, its speed-up over ``whole``, tiling overhead."""
    out = []
    for arch in dict.fromkeys(r["architecture"] for r in rows):
        mine = [r for r in rows if r["architecture"] == arch]
        whole = next(r for r in mine if r["path"] == "whole")
        for path in dict.fromkeys(r["path"] for r in mine):
            best = max((r for r in mine if r["path"] == path), key=lambda r: r["mp_per_s"])
            out.append({"architecture": arch, "path": path, "best_tile": best["tile"], "mp_per_s": best["mp_per_s"],
                        "of_fp32_floor": best["of_fp32_floor"], "vs_whole": best["mp_per_s"] / whole["mp_per_s"]})
    return out


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--size", type=int, default=1024, help="side of the square test plane")
    parser.add_argument("--tiles", default="128,256,512")
    parser.add_argument("--archs", default="arcnn,fast-arcnn,srcnn")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.size, args.tiles, args.archs, args.repeats = 64, "32", "arcnn,fast-arcnn", 1
    floor = Floor(n=256 if args.quick else 2048)
    rows = []
    for arch in args.archs.split(","):
        rows += measure(arch, args.size, [int(t) for t in args.tiles.split(",")], args.repeats, floor)
    best = summary(rows)
    ratios = []
    for path in ("ours fp32", "ours bf16"):
        fast = [r for r in best if r["architecture"] == "fast-arcnn" and r["path"] == path]
        slow = [r for r in best if r["architecture"] == "arcnn" and r["path"] == path]
        if fast and slow:
            ratios.append({"path": path, "fast_arcnn_over_arcnn": fast[0]["mp_per_s"] / slow[0]["mp_per_s"]})
    print(f"\n{args.size} x {args.size} plane, best of {args.repeats}; floor sampled beside each row")
    print(table(rows, ["architecture", "path", "tile", "mp_per_s", "gflops", "floor_fp32_gflops",
                       "of_fp32_floor", "of_bf16_floor"]))
    print()
    print(table(best, ["architecture", "path", "best_tile", "mp_per_s", "of_fp32_floor", "vs_whole"]))
    if ratios:
        print()
        print(table(ratios, ["path", "fast_arcnn_over_arcnn"]))
    path = write("model_throughput", args.json, {"size": args.size, "repeats": args.repeats, "rows": rows,
                                                 "best": best, "fast_over_arcnn": ratios, "floor_best": floor.best()})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
