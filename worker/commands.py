"""CLI commands for bucket-scale jobs: ``enqueue``, ``status``, ``jobs``, ``cancel``, ``worker`` and ``run``.

``run`` is the embedded default (no broker, one process); the others are the distributed
form of the same job, through Celery and Redis. Both select keys with :mod:`arcnn.jobs.listing`
and restore them with :class:`arcnn.jobs.pipeline.Pipeline`, so they behave the same (and as
``arcnn restore``, which drives the same engine).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import click
import redis
from tqdm import tqdm

from arcnn.commands import drive, inference_options, output_options, overridden, report_options
from arcnn.errors import ArcnnError
from arcnn.jobs.locations import Location
from arcnn.jobs.spec import FORMATS, JobSpec, SpecError
from arcnn.policy import TIERS
from arcnn.settings import PRECISIONS
from worker.jobs import LIST_TASK, TERMINAL, JobStatus, JobStore
from worker.settings import WorkerSettings


def _job_options(command: Callable) -> Callable:
    """The options shared by ``enqueue`` and ``run`` (they describe the same job)."""
    options = [
        click.argument("src"),
        click.option("--dest", required=True, help="Destination: s3://bucket/prefix or a folder."),
        click.option("--model", default="auto", show_default=True,
                     help="auto (by estimated JPEG quality), a bundled name, a path, or random:<spec>."),
        click.option("--format", "fmt", type=click.Choice(FORMATS), default="png",
                     show_default=True, help="Output format (and extension); keep: each key's own "
                                             "(JPEG, PNG, WebP; others as PNG)."),
        click.option("--overwrite", is_flag=True, help="Redo keys whose output is already recorded."),
        click.option("--include", metavar="GLOB",
                     help="Only keys (relative to SRC) matching GLOB, with the shell's rules: * and ? "
                          "stop at /, ** crosses folders. Default: image extensions."),
        click.option("--allow-overlap", is_flag=True, help="Allow DEST inside SRC or SRC inside DEST."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _spec(src: str, dest: str, model: str, fmt: str, overwrite: bool, include: str | None,
          allow_overlap: bool, **output: object) -> tuple[JobSpec, Location, Location]:
    """The job, with its parsed locations; bad input is a usage error before anything starts."""
    from arcnn.jobs.listing import validate

    try:
        spec = JobSpec(src, dest, model, fmt, overwrite, include, allow_overlap, **output)
        return (spec, *validate(spec))
    except (ArcnnError, SpecError) as error:
        raise click.UsageError(str(error)) from error


@click.command()
@_job_options
@output_options
@click.option("--tier", type=click.Choice(TIERS),
              help="Models auto picks from, for this job (default: each worker's ARCNN_TIER).")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="Inference precision for this job (default: each worker's ARCNN_PRECISION).")
def enqueue(src: str, dest: str, model: str, fmt: str, overwrite: bool, include: str | None,
            allow_overlap: bool, output_quality: int, suffix: str, tier: str | None, precision: str | None) -> None:
    """Start a job restoring every image under SRC into DEST; prints the job id at once.

    Workers list SRC page by page and queue the keys in batches, so this returns immediately
    however large the prefix is. Follow it with `arcnn status JOB --watch`. --tier and
    --precision travel with the job: every worker applies them to its keys.
    """
    from worker.app import QUEUE, configure
    from worker.redelivery import task_id

    spec, src_location, dest_location = _spec(src, dest, model, fmt, overwrite, include, allow_overlap,
                                              quality=output_quality, suffix=suffix)
    settings = settings_from_env()
    store = reachable_store(settings.broker_url)
    _check_source(src_location, settings)
    _check_destination(dest_location, settings)
    app = configure(settings)
    options = {name: value for name, value in (("tier", tier), ("precision", precision)) if value}
    job_id = store.create(spec, options)
    # By name: importing worker.tasks would import torch (seconds) for one message.
    app.send_task(LIST_TASK, args=[job_id, 0], queue=QUEUE, task_id=task_id(job_id, "l0"))
    click.echo(job_id)


def settings_from_env() -> WorkerSettings:
    """The settings the environment gives this command; a bad value is one line, not a traceback."""
    try:
        return WorkerSettings.from_env(os.environ)
    except ValueError as error:
        raise click.ClickException(str(error)) from error


def _check_destination(location: Location, settings: WorkerSettings) -> None:
    """One line and exit 1 when DEST can never be written (a missing bucket)."""
    from arcnn.jobs.listing import check_destination
    from worker.storage import open_storage

    try:
        check_destination(open_storage(location, settings))
    except ArcnnError as error:
        raise click.ClickException(str(error)) from None


def _check_source(location: Location, settings: WorkerSettings) -> None:
    """One line and exit 1 when SRC is in a bucket that does not exist: a queued job would only
    fail later, at its first listing, out of sight of whoever typed the command."""
    from worker.storage import open_storage

    if location.scheme != "s3":
        return
    try:
        open_storage(location, settings).check()
    except ArcnnError as error:
        raise click.ClickException(f"source {location}: {error}") from None


def masked(url: str) -> str:
    """A broker URL fit to print: its password, in the user part or as ``?password=``, as ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = "&".join(f"{name}=***" if name.lower() == "password" else f"{name}={value}" if sep else name
                     for name, sep, value in (item.partition("=") for item in parts.query.split("&") if item))
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def reachable_store(url: str) -> JobStore:
    """The job store, after one quick ping: one-shot commands fail within seconds, in one line,
    when the broker is down (workers keep :func:`worker.jobs.connect`'s long retry policy)."""
    probe = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        probe.ping()
    except redis.RedisError as error:
        raise click.ClickException(f"cannot reach the broker at {masked(url)} (ARCNN_BROKER_URL): {error}") from None
    finally:
        probe.close()
    return JobStore.from_url(url)


def _describe(job: JobStatus) -> str:
    lines = [
        f"job {job.id}: {job.state}",
        f"  {job.spec.src} -> {job.spec.dest} (model {job.spec.model}, {job.spec.fmt}"
        + "".join(f", {name} {value}" for name, value in sorted(job.options.items())) + ")",
        f"  total {job.total}  done {job.done}  passed through {job.passed_through}  skipped {job.skipped}"
        f"  failed {job.failed}"
        f"  ({job.progress:.1%})  {job.throughput:.2f} images/s",
    ]
    if job.note:
        lines.append(f"  {job.note}")
    if job.error:
        lines.append(f"  error: {job.error}")
    for key, failure in job.failed_keys.items():
        lines.append(f"  FAILED {key}: {failure['reason']}: {failure['error']}")
    if job.failed > len(job.failed_keys):
        lines.append(f"  ... and {job.failed - len(job.failed_keys)} more failed keys (see --json)")
    if job.warned:
        lines.append(f"  {job.warned} restored with a warning:")
    for key, warning in job.warnings.items():
        lines.append(f"  WARNING {key}: {warning}")
    if job.warned > len(job.warnings):
        lines.append(f"  ... and {job.warned - len(job.warnings)} more (only the first "
                     f"{len(job.warnings)} are kept)")
    return "\n".join(lines)


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--watch", is_flag=True, help="Show a progress bar until the job ends.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(job_id: str, watch: bool, as_json: bool) -> None:
    """Show a job: state, counts, throughput and failed keys with their reasons.

    Exits 1 if the job has failed (not when single keys have: those are listed).
    """
    store = reachable_store(settings_from_env().broker_url)

    def fetch(limit: int = 1000) -> JobStatus:
        try:
            return store.status(job_id, failed_limit=limit)
        except KeyError as error:
            raise click.ClickException(f"no such job: {job_id}") from error

    job = fetch(0)
    if watch:
        # The rate shown is the job's own (settled keys since its first started), not tqdm's:
        # tqdm saw the count jump from 0 to what was done before the watch began and showed
        # rates like 50533 img/s.
        with tqdm(total=job.total, unit="img", desc=job.state, file=sys.stderr,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]") as bar:
            while True:
                bar.total, bar.n = job.total, job.settled
                bar.set_description(job.state, refresh=False)
                bar.set_postfix_str(f"{job.throughput:.1f} img/s, failed {job.failed}", refresh=False)
                bar.refresh()
                if job.state in TERMINAL:
                    break
                time.sleep(0.5)
                job = fetch(0)
    job = fetch()
    click.echo(json.dumps(job.as_dict(), indent=2) if as_json else _describe(job))
    if job.state == "failed":
        sys.exit(1)


@click.command()
@click.option("--limit", type=int, default=50, show_default=True, help="Newest jobs to show.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def jobs(limit: int, as_json: bool) -> None:
    """List the newest jobs, one line each: id, state, keys with an outcome / listed, SRC -> DEST.

    Jobs are kept 7 days after they end (`arcnn status JOB` shows one in full).
    """
    store = reachable_store(settings_from_env().broker_url)
    found = store.recent(limit=limit, finished_within=float("inf"))
    if as_json:
        click.echo(json.dumps([job.as_dict() for job in found], indent=2))
        return
    for job in found:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created))
        click.echo(f"{job.id}  {job.state:<9}  {job.settled}/{job.total}  failed {job.failed}  "
                   f"{created}  {job.spec.src} -> {job.spec.dest}")
    if not found:
        click.echo("no jobs", err=True)


@click.command()
@click.argument("job_id", metavar="JOB")
def cancel(job_id: str) -> None:
    """Cancel an unfinished job: its queued batches are skipped and keys in flight are not counted.

    Outputs already written stay. Exits 1 if the job does not exist or has already ended.
    """
    store = reachable_store(settings_from_env().broker_url)
    try:
        before = store.status(job_id, failed_limit=0)
    except KeyError:
        raise click.ClickException(f"no such job: {job_id}") from None
    if not store.cancel(job_id):
        raise click.ClickException(f"job {job_id} has already ended ({store.status(job_id, failed_limit=0).state})")
    click.echo(f"job {job_id} cancelled: {before.settled} of {before.total} listed keys had an outcome")


@click.command()
@click.option("--device", help="cpu, cuda, cuda:N or auto (default: ARCNN_DEVICE). Run one worker per GPU.")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="Inference precision (default: ARCNN_PRECISION).")
@click.option("--concurrency", type=int, default=2, show_default=True,
              help="Batches in flight at once (threads sharing this process's one pipeline).")
@click.option("--metrics-port", type=int, help="Prometheus port (default: ARCNN_METRICS_PORT; 0: off).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(device: str | None, precision: str | None, concurrency: int, metrics_port: int | None,
           loglevel: str) -> None:
    """Run a Celery worker: one process holding the model, a threads pool feeding its pipeline.

    Why not prefork: forking after CUDA is initialised is unsafe, every child would hold its own
    copy of the model, and Prometheus metrics would need the multiprocess mode. Threads share one
    model and one registry; torch and PIL release the GIL where the time goes.
    """
    from worker import metrics
    from worker.app import QUEUE, configure
    from worker.engine import worker_pipeline
    from worker.redelivery import Sweeper
    from worker.tasks import Runtime, install

    settings = overridden(settings_from_env(), device=device, precision=precision)
    app = configure(settings)
    runtime = Runtime(settings, worker_pipeline(settings, metrics.MetricsObserver()))
    install(runtime)
    Sweeper(runtime.store, QUEUE, lambda task, args, tid: app.send_task(task, args=args, task_id=tid, queue=QUEUE),
            settings.redeliver_after, owner=runtime.owner).start()
    port = settings.metrics_port if metrics_port is None else metrics_port
    if port:
        try:
            metrics.serve(port, settings.broker_url, [QUEUE], runtime.pipeline.models.device,
                          addr=settings.metrics_addr)
        except OSError as error:
            raise click.ClickException(
                f"cannot serve metrics on {settings.metrics_addr}:{port} ({error.strerror}): another worker "
                "on this host has it? Give each worker its own ARCNN_METRICS_PORT (or --metrics-port; 0 "
                "turns metrics off)") from None
    restorer = runtime.pipeline.models.restorer
    click.echo(f"arcnn worker: device {restorer.device}, precision {restorer.precision}, tier {settings.tier}; "
               f"metrics {f'on http://{settings.metrics_addr}:{port}/metrics' if port else 'off'}; "
               f"broker {masked(settings.broker_url)}; messages of about {settings.batch_seconds} s "
               f"(at most {settings.list_batch} keys), lost ones sent again after {settings.redeliver_after} s, "
               f"unacknowledged ones after {settings.visibility_timeout} s", err=True)
    # app.start, not app.worker_main: worker_main drops the exit code, so a worker stopped by an
    # unrecoverable error exited 0 and `restart: on-failure` policies never brought it back.
    sys.exit(app.start([
        "worker", "--pool=threads", f"--concurrency={concurrency}", f"--loglevel={loglevel}",
        "--queues", QUEUE, "--hostname", f"arcnn-{os.getpid()}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]) or 0)


@click.command()
@_job_options
@output_options
@report_options
@inference_options
def run(src: str, dest: str, model: str, fmt: str, overwrite: bool, include: str | None,
        allow_overlap: bool, output_quality: int, suffix: str, dry_run: bool, as_json: bool,
        tile: int | None, batch_size: int | None, device: str | None, chroma: str | None,
        precision: str | None, tier: str | None, quiet: bool, input_quality: int | None = None) -> None:
    """Restore every image under SRC into DEST in this process (no broker needed).

    Same selection, skipping, retries and output metadata as a queued job, and the same engine,
    lines and summary as `arcnn restore`. Each key gets one line: what ran and why, passed
    through or skipped and why, or why it failed. Exits 1 if any key failed; the failed keys and
    reasons are listed at the end.
    """
    from arcnn.jobs.listing import must_list_first, planned
    from arcnn.jobs.pipeline import Work
    from worker.engine import worker_pipeline
    from worker.storage import open_storage

    spec, src_location, dest_location = _spec(src, dest, model, fmt, overwrite, include, allow_overlap,
                                              quality=output_quality, suffix=suffix)
    settings = overridden(settings_from_env(), tile=tile, batch_size=batch_size, device=device,
                          chroma=chroma, precision=precision, tier=tier, input_quality=input_quality)
    _check_destination(dest_location, settings)
    source, target = open_storage(src_location, settings), open_storage(dest_location, settings)
    try:
        pipeline = worker_pipeline(settings, dry_run=dry_run)
        pipeline.models.check(model)
    except (ArcnnError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
    works = (Work(source, target, named.item.key, named.item.etag, spec, name=named.name, clash=named.clash)
             for group in planned(source, target, spec) for named in group)
    if must_list_first(src_location, dest_location):
        try:
            works = list(works)  # its outputs land where the listing is going: list before writing
        except ArcnnError as error:
            raise click.ClickException(str(error)) from error
    note = f"no keys matched: {src} holds no images" + (f" matching {include}" if include else "")
    drive(pipeline, works, lambda result: (result.work.key, result.out_key), quiet=quiet, as_json=as_json,
          dry_run=dry_run, empty_note=note)
