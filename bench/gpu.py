"""GPU benchmarks: model-only throughput per precision (CUDA graphs on/off), and how busy a stream
of 12 MP photos keeps the GPU. Runs only where a CUDA device is present; elsewhere it says so
and records that nothing was measured.

The floor on a GPU is its measured dense matrix-multiply rate in the same precision
(``torch.mm``, 8192^2). "Busy" for the photo stream is the model-only time for the same tiles
divided by the stream's wall time (1.0 = the GPU never waited for decoding, colour or encoding);
where pynvml is installed, the driver's utilisation samples are reported beside it.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from arcnn.acceleration import PRECISIONS, CudaGraphed, prepare
from arcnn.restoration import Restorer
from arcnn.tiling import restore_planes
from bench.harness import arguments, shipped_like, table, write


def gpu_matmul_tflops(dtype: torch.dtype, n: int) -> float:
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        torch.mm(a, b)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        torch.mm(a, b)
    torch.cuda.synchronize()
    return 10 * 2 * n**3 / (time.perf_counter() - start) / 1e12


def model_only(arch: str, precision: str, graphs: bool, planes: list[np.ndarray], tile: int, batch: int) -> float:
    """Seconds to restore ``planes`` (best of 3, after a warm-up that also autotunes/captures)."""
    fast = prepare(shipped_like(arch), "cuda", precision)
    net = CudaGraphed(fast) if graphs else fast
    best = float("inf")
    for i in range(4):
        torch.cuda.synchronize()
        start = time.perf_counter()
        restore_planes(net, planes, tile, batch, "cuda")
        if i:
            best = min(best, time.perf_counter() - start)
    return best


class Utilisation:
    """Samples the driver's GPU utilisation every 50 ms while running (needs pynvml)."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.samples.append(torch.cuda.utilization())
            except Exception:  # noqa: BLE001 (no pynvml: report none)
                return

    def __enter__(self) -> "Utilisation":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def photo_stream(jpegs: list[bytes], precision: str, graphs: bool, tile: int, batch: int, io_threads: int) -> dict:
    """Decode in a thread pool (prefetching), restore on the GPU, encode PNG in the pool."""
    restorer = Restorer.load("random:9-7-1-5", device="cuda", tile=tile, batch_size=batch, precision=precision,
                             cuda_graphs=graphs)

    def decode(data: bytes) -> Image.Image:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img

    def encode(img: Image.Image) -> int:
        buffer = io.BytesIO()
        img.save(buffer, "PNG", compress_level=1)
        return len(buffer.getvalue())

    restorer.restore(decode(jpegs[0]))  # warm-up: autotuning, graph capture
    with ThreadPoolExecutor(io_threads) as pool, Utilisation() as util:
        torch.cuda.synchronize()
        start = time.perf_counter()
        encoded = [pool.submit(encode, restorer.restore(img)) for img in pool.map(decode, jpegs)]
        for e in encoded:
            e.result()
        wall = time.perf_counter() - start
    pixels = sum(decode(j).width * decode(j).height for j in jpegs)
    return {"wall_seconds": wall, "mp_per_s": pixels / wall / 1e6, "pixels": pixels,
            "nvml_utilisation_mean": float(np.mean(util.samples)) if util.samples else None}


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--photos", type=int, default=16)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device in this run: GPU figures were not measured")
        path = write("gpu", args.json, {"skipped": "no CUDA device"})
        print(f"wrote {path}")
        return
    device = torch.cuda.get_device_name(0)
    torch.backends.cudnn.benchmark = True  # as the commands set it: tile shapes repeat
    size, count, n = (256, 2, 1024) if args.quick else (4096, 4, 8192)
    if args.quick:
        args.tile, args.batch, args.photos = 128, 4, 2
    rng = np.random.default_rng(0)
    planes = [rng.integers(0, 256, (size, size), dtype=np.uint8) for _ in range(count)]
    pixels = size * size * count
    floors = {p: gpu_matmul_tflops(d, n) for p, d in PRECISIONS.items()}
    rows = []
    for arch in ("arcnn", "fast-arcnn"):
        macs = shipped_like(arch).macs_per_pixel
        for precision in PRECISIONS:
            for graphs in (False, True):
                seconds = model_only(arch, precision, graphs, planes, args.tile, args.batch)
                tflops = 2 * macs * pixels / seconds / 1e12
                rows.append({"architecture": arch, "precision": precision, "cuda_graphs": graphs,
                             "mp_per_s": pixels / seconds / 1e6, "tflops": tflops,
                             "floor_tflops": floors[precision], "of_floor": tflops / floors[precision]})
                print(f"  {arch} {precision} graphs={graphs}: {rows[-1]['mp_per_s']:.0f} MP/s", flush=True)
    print(f"\n{device}: model-only, {count} planes of {size}^2, tile {args.tile}, batch {args.batch}")
    print(table(rows, ["architecture", "precision", "cuda_graphs", "mp_per_s", "tflops", "floor_tflops", "of_floor"]))

    side = (3000, 4000) if not args.quick else (120, 160)
    photos = []
    for i in range(args.photos):
        buffer = io.BytesIO()
        yy, xx = np.mgrid[:side[0], :side[1]]
        rgb = np.stack([(xx * (i + 1) + yy) % 256, (yy * 3) % 256, (xx + yy * 2) % 256], -1).astype(np.uint8)
        Image.fromarray(rgb).save(buffer, "JPEG", quality=10)
        photos.append(buffer.getvalue())
    stream = []
    for precision, graphs in (("fp16", False), ("fp16", True)):
        result = photo_stream(photos, precision, graphs, args.tile, args.batch, io_threads=8)
        best_model = max(r["mp_per_s"] for r in rows if r["architecture"] == "arcnn"
                         and r["precision"] == precision and r["cuda_graphs"] == graphs)
        stream.append({"precision": precision, "cuda_graphs": graphs, **result,
                       "busy_estimate": result["mp_per_s"] / best_model})
    print(f"\nstream of {args.photos} photos of {side[1]}x{side[0]} (JPEG q10), AR-CNN on Y")
    print(table(stream, ["precision", "cuda_graphs", "mp_per_s", "busy_estimate", "nvml_utilisation_mean"]))
    path = write("gpu", args.json, {"device": device, "floors_tflops": floors, "rows": rows, "stream": stream})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
