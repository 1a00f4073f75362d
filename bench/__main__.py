"""``python -m bench [--quick]``: every CPU and GPU benchmark in turn, results in bench/out/."""

from __future__ import annotations

import subprocess
import sys

SUITE = ["floor", "per_core", "model_throughput", "side_by_side", "cli_throughput", "peak_memory",
         "product_memory", "auto_precision", "gpu"]


def main() -> None:
    extra = sys.argv[1:]
    for name in SUITE:
        print(f"\n== bench.{name} ==", flush=True)
        subprocess.run([sys.executable, "-m", f"bench.{name}", *extra], check=True)


if __name__ == "__main__":
    main()
