"""What every benchmark shares: the machine description, timing beside the floor, tables, JSON.

A shared machine makes absolute timings drift from minute to minute, so a benchmark never uses a
floor measured at another time: :class:`Floor` samples the matrix-multiply rate right before
each repeat of a measurement, and a row's fraction of the floor uses the floor sampled beside it.
Best-of-N is used for both (the least-disturbed repeat is the closest to the machine's ability).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from arcnn.acceleration import cpu_has_bf16
from arcnn.registry import load_named

OUT_DIR = Path(__file__).parent / "out"


def arguments(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes (each adds its own)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny inputs, one repeat: checks that it runs")
    parser.add_argument("--json", type=Path, default=None, help="where to write results (default bench/out/NAME.json)")
    return parser


def shipped_like(arch: str) -> nn.Module:
    """``random:<arch>`` (seeded, untrained: speed does not depend on the weights), made residual
    like every bundled model, since that decides whether the output layer may run in bf16. A name
    that is not an architecture is loaded as a bundled model (``jpeg-q10``'s widths are its own)."""
    from arcnn.architectures import ARCHITECTURES

    model, _ = load_named(f"random:{arch}" if arch in ARCHITECTURES else arch)
    model.residual = True
    return model


def machine() -> dict:
    """Where a result was measured, and how busy the machine was (shared CPUs skew timings)."""
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    others = subprocess.run(["ps", "-eo", "pcpu,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    busy = [line.strip() for line in others if float(line.split()[0]) > 20 and "bench." not in line]
    return {
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cpu_bf16": cpu_has_bf16(), "torch": torch.__version__, "python": platform.python_version(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "other_busy_processes": busy[:5],
    }


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 2048) -> float:
    """One timed n x n matrix multiply on all torch threads (after the operands exist)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    start = time.perf_counter()
    torch.mm(a, b)
    return 2 * n**3 / (time.perf_counter() - start) / 1e9


@dataclass
class Floor:
    """Samples the matrix-multiply floor beside measurements; keeps every sample."""

    n: int = 2048
    samples: dict[str, list[float]] = field(default_factory=lambda: {"fp32": [], "bf16": []})

    def sample(self) -> dict[str, float]:
        now = {"fp32": matmul_gflops(torch.float32, self.n)}
        if cpu_has_bf16():
            now["bf16"] = matmul_gflops(torch.bfloat16, self.n)
        for k, v in now.items():
            self.samples[k].append(v)
        return now

    def best(self) -> dict[str, float]:
        return {k: max(v) for k, v in self.samples.items() if v}


def timed(fn: Callable[[], object], repeats: int, floor: Floor) -> tuple[float, dict[str, float]]:
    """(best seconds of ``fn`` over ``repeats`` after one warm-up, best floor sampled beside it)."""
    fn()
    best, beside = float("inf"), {}
    for _ in range(repeats):
        for k, v in floor.sample().items():
            beside[k] = max(beside.get(k, 0.0), v)
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best, beside


def throughput_row(pixels: int, seconds: float, macs_per_pixel: int, floor: dict[str, float]) -> dict:
    """Megapixels/s, the GFLOP/s they amount to, and that as fractions of the floors beside it."""
    gflops = 2 * macs_per_pixel * pixels / seconds / 1e9
    row = {"mp_per_s": pixels / seconds / 1e6, "gflops": gflops,
           "floor_fp32_gflops": floor["fp32"], "of_fp32_floor": gflops / floor["fp32"],
           "floor_mp_per_s": floor["fp32"] * 1e9 / (2 * macs_per_pixel) / 1e6}
    if "bf16" in floor:
        row["of_bf16_floor"] = gflops / floor["bf16"]
    return row


def table(rows: list[dict], columns: list[str]) -> str:
    """A markdown table of ``columns`` (floats to 4 significant digits)."""
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
        return "" if v is None else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write(name: str, path: Path | None, payload: dict) -> Path:
    """Write ``payload`` (plus the benchmark name and machine) as JSON; returns the path."""
    path = path or OUT_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2) + "\n")
    return path


def timed_restore(inputs: Path, out: Path, *options: str) -> float:
    """Wall seconds of one ``arcnn restore INPUTS -o OUT --device cpu --quiet OPTIONS``, run as a
    user runs it (a new process: start-up included), into an emptied OUT."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "arcnn", "restore", str(inputs), "-o", str(out), "--device", "cpu",
                    "--quiet", *options], check=True, capture_output=True)
    return time.perf_counter() - start
