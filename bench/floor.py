"""The floor: matrix-multiply rate of this machine and what it means per architecture.

An architecture needs ``macs_per_pixel`` multiply-adds per output pixel, so at the measured
matrix-multiply rate it cannot restore more than ``rate / (2 * macs_per_pixel)`` pixels/s: that
is the floor every other benchmark is a fraction of. Measured on all torch threads and on one.
"""

from __future__ import annotations

import torch

from arcnn.architectures import ARCHITECTURES
from bench.harness import Floor, arguments, matmul_gflops, table, write


def main() -> None:
    args = arguments(__doc__).parse_args()
    n, repeats = (256, 1) if args.quick else (2048, 5)
    floor = Floor(n=n)
    for _ in range(repeats):
        floor.sample()
    best = floor.best()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    single = {"fp32": max(matmul_gflops(torch.float32, n) for _ in range(repeats))}
    if "bf16" in best:
        single["bf16"] = max(matmul_gflops(torch.bfloat16, n) for _ in range(repeats))
    torch.set_num_threads(threads)
    rates = [{"precision": k, "threads": threads, "gflops": v} for k, v in best.items()]
    rates += [{"precision": k, "threads": 1, "gflops": v} for k, v in single.items()]
    archs = []
    for name, arch in ARCHITECTURES.items():
        macs = arch.build().macs_per_pixel
        row = {"architecture": name, "macs_per_pixel": macs, "fp32_floor_mp_per_s": best["fp32"] * 1e9 / (2 * macs) / 1e6}
        if "bf16" in best:
            row["bf16_floor_mp_per_s"] = best["bf16"] * 1e9 / (2 * macs) / 1e6
        archs.append(row)
    print(f"matrix multiply {n} x {n}, best of {repeats}:")
    print(table(rates, ["precision", "threads", "gflops"]))
    print()
    print(table(archs, list(archs[0])))
    path = write("floor", args.json, {"n": n, "rates": rates, "architectures": archs})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
