"""Per-core efficiency: one thread, CPU time, the network alone, against a one-thread floor.

On a shared machine wall-clock throughput measures the scheduler as much as the code. CPU time
of a single-threaded run does not: it is the work one core does per second it actually ran, so
its ratio to the single-threaded matrix-multiply rate (also in CPU time, sampled beside it) is
the efficiency of the kernels themselves. The tiled engine then runs one such worker per core.
"""

from __future__ import annotations

import time

import torch

from arcnn.acceleration import cpu_has_bf16, prepare
from bench.harness import arguments, shipped_like, table, write


def cpu_seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--tiles", default="256,512")
    parser.add_argument("--archs", default="arcnn,fast-arcnn,srcnn")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = 2048
    if args.quick:
        args.tiles, args.archs, args.repeats, n = "32", "arcnn,fast-arcnn", 1, 256
    torch.set_num_threads(1)
    precisions = ["fp32", "bf16"] if cpu_has_bf16() else ["fp32"]
    rows = []
    with torch.inference_mode():
        for tile in (int(t) for t in args.tiles.split(",")):
            for arch in args.archs.split(","):
                model = shipped_like(arch)
                x = torch.rand(1, 1, tile + 2 * model.radius, tile + 2 * model.radius)
                nets = {"plain fp32": model, **{f"ours {p}": prepare(model, "cpu", p) for p in precisions}}
                for path, net in nets.items():
                    seconds = cpu_seconds(lambda: net(x), args.repeats)
                    dtype = torch.bfloat16 if path.endswith("bf16") else torch.float32
                    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
                    floor = 2 * n**3 / cpu_seconds(lambda: torch.mm(a, b), args.repeats) / 1e9
                    a32 = a.float()
                    floor32 = 2 * n**3 / cpu_seconds(lambda: torch.mm(a32, a32), args.repeats) / 1e9
                    gflops = 2 * model.macs_per_pixel * tile * tile / seconds / 1e9
                    rows.append({"tile": tile, "architecture": arch, "path": path,
                                 "mp_per_cpu_s": tile * tile / seconds / 1e6, "gflops_per_core": gflops,
                                 "floor_fp32": floor32, "of_fp32_floor": gflops / floor32,
                                 "of_own_floor": gflops / floor})
                    print(f"  {tile} {arch} {path}: {rows[-1]['of_fp32_floor']:.2f} of fp32 floor", flush=True)
    ratios = []
    for tile in dict.fromkeys(r["tile"] for r in rows):
        for path in dict.fromkeys(r["path"] for r in rows):
            pick = {r["architecture"]: r for r in rows if r["tile"] == tile and r["path"] == path}
            if "arcnn" in pick and "fast-arcnn" in pick:
                ratios.append({"tile": tile, "path": path,
                               "fast_arcnn_over_arcnn": pick["fast-arcnn"]["mp_per_cpu_s"] / pick["arcnn"]["mp_per_cpu_s"]})
    print(f"\none thread, CPU time, network forward on one tile (random weights, residual), best of {args.repeats}")
    print(table(rows, ["tile", "architecture", "path", "mp_per_cpu_s", "gflops_per_core", "floor_fp32",
                       "of_fp32_floor", "of_own_floor"]))
    print()
    print(table(ratios, ["tile", "path", "fast_arcnn_over_arcnn"]))
    path = write("per_core", args.json, {"rows": rows, "fast_over_arcnn": ratios})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
