"""End-to-end worker throughput against model-only throughput, on the same images in one run.

    python bench/worker_throughput.py [--images 16] [--rounds 2] [--size 640x480] [--torch-threads 1]

Starts its own redis-server and moto S3 server (HTTP, as subprocesses), uploads generated JPEGs,
then measures:

- model-only: ``Restorer.restore`` over the already-decoded images in this process (no I/O,
  no codecs): the ceiling;
- worker: one ``arcnn worker`` subprocess restoring the whole prefix, queued through Redis and
  fetched from / written to the S3 server over HTTP (timed from the job's first key started to
  its last key recorded, so worker start-up and model loading are not counted);

and prints images/s, megapixels/s and the ratio. Model-only is measured before the first
worker run and after each of ``--rounds`` worker runs, and the means are compared, because the
machine may be shared and its load drift. Both use the same torch threads.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import numpy as np
import redis
import torch
from PIL import Image, ImageFilter

from arcnn.images import decode_image
from arcnn.restoration import Restorer
from worker.jobs import JobStore

BUCKET = "bench"
ARCNN = str(Path(sys.executable).with_name("arcnn"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)
    return value


def start_servers(workdir: Path, redis_port: int, s3_port: int) -> list[subprocess.Popen]:
    """A redis-server (no persistence) and moto's S3 server on loopback, as subprocesses."""
    return [
        subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]


def redis_up(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def s3_up(client) -> bool:  # noqa: ANN001
    try:
        client.list_buckets()
        return True
    except Exception:  # noqa: BLE001
        return False


def photo_like(seed: int, width: int, height: int) -> bytes:
    """Smooth shapes plus mild noise, JPEG q=20: blocky like real low-quality photos."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        for _ in range(4):
            fx, fy, phase = rng.uniform(0.002, 0.03, 2).tolist() + [rng.uniform(0, 6.3)]
            img[..., c] += 60 * np.sin(fx * x + fy * y + phase)
    img += 128 + rng.normal(0, 8, img.shape)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    buffer = io.BytesIO()
    pil.save(buffer, "JPEG", quality=20)
    return buffer.getvalue()


def model_only(images: list[Image.Image], model: str) -> float:
    restorer = Restorer.load(model, device="cpu")
    restorer.restore(images[0])  # warm-up
    start = time.perf_counter()
    for image in images:
        restorer.restore(image, model=model)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="worker runs, each followed by a model-only run")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT of the generated images")
    parser.add_argument("--model", default="random:9-7-1-5", help="same compute as the trained AR-CNN")
    parser.add_argument("--format", default="png", choices=["png", "jpeg", "webp"], help="output format")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--io-threads", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    width, height = map(int, args.size.lower().split("x"))
    torch.set_num_threads(args.torch_threads)

    work = Path(tempfile.mkdtemp(prefix="arcnn-bench-"))
    redis_port, s3_port, metrics_port = free_port(), free_port(), free_port()
    servers = start_servers(work, redis_port, s3_port)
    worker = None
    try:
        broker, endpoint = f"redis://127.0.0.1:{redis_port}/0", f"http://127.0.0.1:{s3_port}"
        env = {**os.environ, "ARCNN_BROKER_URL": broker, "ARCNN_S3_ENDPOINT_URL": endpoint,
               "ARCNN_TORCH_THREADS": str(args.torch_threads), "ARCNN_IO_THREADS": str(args.io_threads),
               "ARCNN_DEVICE": "cpu", "ARCNN_METRICS_PORT": str(metrics_port), "ARCNN_LIST_BATCH": "4",
               "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
        wait(lambda: redis_up(redis.Redis(port=redis_port)), 20, "redis")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
        wait(lambda: s3_up(s3), 30, "moto server")
        s3.create_bucket(Bucket=BUCKET)
        sources = [photo_like(i, width, height) for i in range(args.images)]
        for i, data in enumerate(sources):
            s3.put_object(Bucket=BUCKET, Key=f"in/{i:05d}.jpg", Body=data)
        decoded = [decode_image(data, 10**9) for data in sources]
        megapixels = args.images * width * height / 1e6

        model_runs = [model_only(decoded, args.model)]

        worker = subprocess.Popen([ARCNN, "worker", "--concurrency", str(args.concurrency), "--loglevel", "WARNING"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        store = JobStore.from_url(broker)

        def run_job(dest: str, *options: str):  # noqa: ANN202
            job_id = subprocess.run(
                [ARCNN, "enqueue", f"s3://{BUCKET}/in", "--dest", f"s3://{BUCKET}/{dest}",
                 "--model", args.model, "--format", args.format, *options],
                env=env, check=True, capture_output=True, text=True,
            ).stdout.strip()
            return wait(lambda: _finished(store, job_id), 3600, f"job {job_id}")

        run_job("warmup", "--include", "00000.jpg")  # loads the model, opens connections
        warm = _stage_seconds(metrics_port)
        worker_runs = []
        for round_no in range(args.rounds):  # alternate with model-only: a shared machine drifts
            status = run_job(f"out{round_no}")
            assert status.done == args.images, status
            worker_runs.append(status.finished - status.started)
            model_runs.append(model_only(decoded, args.model))
        stages = {k: v - warm.get(k, 0.0) for k, v in _stage_seconds(metrics_port).items()}
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        for server in servers:
            server.terminate()
            server.wait(10)

    model_seconds = sum(model_runs) / len(model_runs)
    worker_seconds = sum(worker_runs) / len(worker_runs)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {_cpu_name()}",
        "images": args.images, "rounds": args.rounds, "size": f"{width}x{height}", "model": args.model,
        "format": args.format,
        "torch_threads": args.torch_threads, "io_threads": args.io_threads, "concurrency": args.concurrency,
        "model_only_images_per_s": args.images / model_seconds,
        "model_only_mp_per_s": megapixels / model_seconds,
        "model_only_runs_s": [round(t, 2) for t in model_runs],
        "worker_runs_s": [round(t, 2) for t in worker_runs],
        "worker_images_per_s": args.images / worker_seconds,
        "worker_mp_per_s": megapixels / worker_seconds,
        "ratio": model_seconds / worker_seconds,
        "worker_stage_seconds_per_image": {
            k: round(v / (args.images * args.rounds), 4) for k, v in stages.items()
        },
        "model_only_seconds_per_image": round(model_seconds / args.images, 4),
        # share of the worker's wall time during which its inference stage was busy
        "infer_busy": stages["infer"] / sum(worker_runs),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"model only : {result['model_only_images_per_s']:.3f} images/s  "
              f"{result['model_only_mp_per_s']:.3f} MP/s  (runs {result['model_only_runs_s']} s)")
        print(f"worker     : {result['worker_images_per_s']:.3f} images/s  {result['worker_mp_per_s']:.3f} MP/s"
              f"  (runs {result['worker_runs_s']} s)")
        print(f"ratio      : {result['ratio']:.1%} of model-only throughput")
        print(f"infer busy : {result['infer_busy']:.1%} of the worker's wall time")
        print(f"per image  : model-only {result['model_only_seconds_per_image']} s; worker stages "
              f"{result['worker_stage_seconds_per_image']}")


def _stage_seconds(port: int) -> dict[str, float]:
    """Total seconds per pipeline stage in the worker (warm-up image included), from /metrics."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        sample.labels["stage"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples if sample.name == "arcnn_stage_duration_seconds_sum"
    }


def _finished(store: JobStore, job_id: str):  # noqa: ANN202
    status = store.status(job_id, failed_limit=0)
    if status.state == "failed":
        raise RuntimeError(status.error)
    return status if status.state == "done" else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
