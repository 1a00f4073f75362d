"""CLI commands for the library: ``restore`` and ``eval`` (``models`` is in :mod:`arcnn.catalogue`),
the inference and output options ``arcnn run`` shares with ``restore``, and :func:`drive`, the
loop both commands run their job with (the engine itself is :mod:`arcnn.jobs`)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

import click

from arcnn.errors import ArcnnError
from arcnn.jobs.listing import selected
from arcnn.jobs.locations import check_disjoint, parse_location
from arcnn.jobs.report import Tally, fate
from arcnn.jobs.spec import DEFAULT_QUALITY, FORMATS, JobSpec, SpecError
from arcnn.jobs.storage import LocalStorage, MemoryStorage, ObjectInfo, Storage, file_etag
from arcnn.model_names import TIERS
from arcnn.naming import KEEP_FORMATS, output_extension, output_names
from arcnn.policy import CHROMA_MODES
from arcnn.settings import PRECISIONS, Settings

if TYPE_CHECKING:
    from arcnn.jobs.pipeline import Pipeline, Result, Work

MIN_TILE = 64
"""Smallest tile the commands accept: below it the halo (9-18 pixels a side) is most of each
tile's work, and a 1-pixel tile took minutes for a small photo."""


def inference_options(command: Callable) -> Callable:
    """The options that tune inference, shared by ``arcnn restore`` and ``arcnn run`` so that both
    spell, explain and default them alike (None: the setting from the environment, see
    :func:`overridden`)."""
    options = [
        click.option("--tile", type=click.IntRange(MIN_TILE), default=None,
                     help=f"Tile side in pixels, at least {MIN_TILE} (default: ARCNN_TILE)."),
        click.option("--batch-size", type=click.IntRange(1), default=None,
                     help="Tiles per forward pass, at least 1 (default: ARCNN_BATCH_SIZE)."),
        click.option("--device", default=None, help="cpu, cuda or auto (default: ARCNN_DEVICE)."),
        click.option("--chroma", type=click.Choice(CHROMA_MODES), default=None,
                     help="Colour images: restore Cb/Cr with the chroma network where it was measured to "
                          "help (auto), on every colour image (restore), or pass them through "
                          "(default: ARCNN_CHROMA, itself auto)."),
        click.option("--precision", type=click.Choice(PRECISIONS), default=None,
                     help="auto: fp16 on CUDA, bf16 on CPUs with AMX or AMD AVX512-BF16, fp32 on "
                          "other CPUs (default: ARCNN_PRECISION)."),
        click.option("--tier", type=click.Choice(TIERS), default=None,
                     help="Models auto picks from: standard (AR-CNN) or fast (Fast AR-CNN, several times "
                          "the throughput for a smaller gain) (default: ARCNN_TIER, itself standard)."),
        click.option("--input-quality", type=click.IntRange(1, 100), default=None,
                     help="JPEG quality to assume every input was compressed at, instead of reading it "
                          "from the file and its pixels: lower restores more strongly (default: "
                          "ARCNN_INPUT_QUALITY, itself 0: read each input). Not the output's quality."),
        click.option("--quiet", "-q", is_flag=True,
                     help="No per-file lines or progress bar: errors and the summary only."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


SettingsT = TypeVar("SettingsT", bound=Settings)


def overridden(settings: SettingsT, **given: object) -> SettingsT:
    """``settings`` with the options the user gave (those not None) in place of the environment's
    values, for this run only."""
    return dataclasses.replace(settings, **{name: value for name, value in given.items() if value is not None})


def output_options(command: Callable) -> Callable:
    """The options about what is written, shared by ``arcnn restore``, ``run`` and ``enqueue``."""
    options = [
        click.option("--output-quality", type=click.IntRange(1, 100), default=DEFAULT_QUALITY, show_default=True,
                     help="Quality of JPEG and WebP outputs (PNG is lossless). A passthrough written in its "
                          "input's format is the input's own bytes, whatever this says."),
        click.option("--suffix", default="", metavar="TEXT",
                     help="Added to each output's name before the extension: a.jpg -> a_restored.png "
                          "with --suffix _restored."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def report_options(command: Callable) -> Callable:
    """The options about what is reported, shared by ``arcnn restore`` and ``arcnn run``."""
    options = [
        click.option("--dry-run", is_flag=True,
                     help="Say what would be done to each file (its model and why, or skipped) and write nothing."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print the summary as JSON (per-file lines go to stderr, the progress bar is off)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def drive(pipeline: Pipeline, works: Iterable[Work], shown: Callable[[Result], tuple[str, str]], *,
          quiet: bool, as_json: bool, dry_run: bool = False, total: int | None = None,
          empty_note: str = "", out: TextIO | None = None) -> None:
    """Run ``works`` through ``pipeline`` as ``restore`` and ``run`` both do: a progress bar,
    one line per key (``shown`` gives the source and target names to print), the summary
    table and totals (or ``--json``), the failures and warnings; exit 1 if any key failed.

    ``out`` is where the lines and summary go (stdout unless it carries an image).
    """
    from tqdm import tqdm

    out = out or sys.stdout
    lines = None if quiet else (sys.stderr if as_json else out)
    tally = Tally()
    start = time.perf_counter()
    try:
        with tqdm(total=total, unit="img", desc="planning" if dry_run else "restoring", file=sys.stderr,
                  disable=quiet or as_json or not sys.stderr.isatty()) as bar:
            for result in pipeline.run(works):
                source, target = shown(result)
                tally.add(result, source)
                if lines is not None:
                    tqdm.write(fate(result, source, target), file=lines)
                bar.update()
                bar.set_postfix(failed=tally.outcomes["failed"], refresh=False)
    except ArcnnError as error:  # the listing itself failed
        raise click.ClickException(str(error)) from error
    finally:
        pipeline.close()
    seconds = time.perf_counter() - start
    summary = tally.summary(seconds)
    if dry_run:
        summary["dry_run"] = True
    if tally.total == 0 and empty_note:
        summary["note"] = empty_note
    if as_json:
        click.echo(json.dumps(summary, indent=2), file=out)
    else:
        if not quiet:
            for row in tally.table():
                click.echo(row, file=out)
        click.echo(tally.totals_line(seconds) + ("  (dry run: nothing written)" if dry_run else ""), file=out)
        if "note" in summary:
            click.echo(summary["note"], err=True)
        for name, failure in tally.failures.items():
            click.echo(f"FAILED {name}: {failure['reason']}: {failure['error']}", err=True)
        for name, warning in tally.warnings.items():
            click.echo(f"WARNING {name}: {warning}", err=True)
    if tally.failures:
        sys.exit(1)


@click.command("restore")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, allow_dash=True))
@click.option("-o", "--output", required=True, metavar="DIR|FILE|-",
              help="Folder for the restored images (each input's path under it, with the format's "
                   "extension: docs/worker.md, output names); a file name (.png, .jpg, .webp) for a "
                   "single input; - for standard output.")
@click.option("--model", default="auto", show_default=True,
              help="Bundled model name, a .safetensors path, or auto (nearest estimated JPEG quality).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format: png (the default), jpeg, webp, or keep (each input's own: JPEG, PNG "
                   "and WebP keep theirs, others become PNG). With -o FILE its extension decides.")
@click.option("--include", metavar="GLOB",
              help="In folders, only files matching GLOB, relative to the folder, with the shell's rules: "
                   "* and ? stop at /, ** crosses folders ('**/*.jpg'). Default: image extensions.")
@click.option("--overwrite", is_flag=True, help="Redo files whose output is recorded as done from the same input.")
@click.option("--allow-overlap", is_flag=True,
              help="Allow the output folder inside an input folder, or the same folder. Outputs are never "
                   "taken as inputs, and an input is never replaced.")
@output_options
@report_options
@inference_options
def restore_command(paths: tuple[Path, ...], output: str, model: str, fmt: str | None, include: str | None,
                    overwrite: bool, allow_overlap: bool, output_quality: int, suffix: str, dry_run: bool,
                    as_json: bool, tile: int | None, batch_size: int | None, device: str | None,
                    chroma: str | None, precision: str | None, tier: str | None, quiet: bool,
                    input_quality: int | None = None) -> None:
    """Restore image files or folders (- for standard input) into OUTPUT.

    Each file gets one line: what ran and why (``jpeg-q20+colour (estimated q18, 4:2:0)``), that it
    passed through and why, that it was skipped (done by an earlier run), or why it failed; then
    a summary. Outputs are recorded in OUTPUT/.arcnn-meta/, so a re-run skips what is done
    (see README, "What restore writes"). Exits 1 if any file failed.
    """
    from arcnn.jobs.pipeline import Pipeline

    try:
        settings = overridden(Settings.from_env(os.environ), tile=tile, batch_size=batch_size, device=device,
                              chroma=chroma, precision=precision, tier=tier, input_quality=input_quality)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    target = restore_target(output, paths, fmt)
    try:
        spec = JobSpec(",".join(map(str, paths)), output, model, target.fmt, overwrite, include, allow_overlap,
                       output_quality, suffix)
    except SpecError as exc:
        raise click.UsageError(str(exc)) from exc
    works, shown_source = restore_works(paths, target, spec)
    if not works:
        raise click.ClickException("no input images found")
    try:
        pipeline = Pipeline.from_settings(settings, dry_run=dry_run)
        pipeline.models.check(model)
    except (ArcnnError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc

    def shown(result: Result) -> tuple[str, str]:
        if target.to_stdout:
            return shown_source[id(result.work)], "-"
        return shown_source[id(result.work)], str(Path(output) / result.out_key)

    report = sys.stderr if target.to_stdout else sys.stdout
    try:
        drive(pipeline, works, shown, quiet=quiet, as_json=as_json, dry_run=dry_run, total=len(works), out=report)
    finally:
        if target.to_stdout and not dry_run:
            for data, _ in target.storage.objects.values():
                sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()


def sniffed_extension(data: bytes) -> str:
    """The extension of JPEG, PNG or WebP bytes, from their signature ("" for anything else)."""
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    return ".webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else ""


@dataclass
class RestoreTarget:
    """Where ``arcnn restore`` writes: a folder, one file, or standard output."""

    storage: Storage
    fmt: str
    name: str | None = None
    """The output's name when OUTPUT is a file (or standard output)."""
    to_stdout: bool = False


def restore_target(output: str, paths: tuple[Path, ...], fmt: str | None) -> RestoreTarget:
    """Read ``-o``: ``-`` is standard output and a name with an image extension is a file, both
    for a single input file only; anything else is a folder."""
    single = len(paths) == 1 and (str(paths[0]) == "-" or not paths[0].is_dir())
    if output == "-":
        if not single:
            raise click.UsageError("-o - (standard output) takes a single input file")
        return RestoreTarget(MemoryStorage("stdout"), fmt or "png", name="stdout", to_stdout=True)
    as_file = Path(output)
    if single and not as_file.is_dir() and as_file.suffix.lower() in KEEP_FORMATS:
        implied = KEEP_FORMATS[as_file.suffix.lower()]
        if fmt not in (None, implied):
            raise click.UsageError(f"-o {output} is a {implied.upper()} file name, but --format is {fmt}")
        return RestoreTarget(LocalStorage(parse_location(str(as_file.parent))), implied, name=as_file.name)
    if not as_file.is_dir() and as_file.suffix.lower() in KEEP_FORMATS:
        raise click.UsageError(f"-o {output} names a file, which takes a single input file; give a folder")
    if as_file.is_file():
        raise click.UsageError(f"-o {output} is a file: give a folder (or, for one input, an image file name)")
    return RestoreTarget(LocalStorage(parse_location(output)), fmt or "png")


def restore_works(paths: tuple[Path, ...], target: RestoreTarget, spec: JobSpec) -> tuple[list[Work], dict[int, str]]:
    """Every input of ``arcnn restore`` as work for the engine, named with :mod:`arcnn.naming`
    as ``arcnn run DIR`` names a folder (a file given by itself is named by its file name), and
    how each is shown (by ``id`` of the work)."""
    from arcnn.jobs.pipeline import Work

    inputs: list[tuple[str, Storage, ObjectInfo, str]] = []  # relative name, storage, object, shown
    for path in paths:
        if str(path) == "-":
            data = sys.stdin.buffer.read()
            name = "stdin" + sniffed_extension(data)  # so that --format keep keeps its format
            stdin = MemoryStorage("stdin", {name: data})
            inputs.append((name, stdin, next(stdin.list()), "-"))
        elif path.is_dir():
            folder = LocalStorage(parse_location(str(path)))
            if not spec.allow_overlap:
                try:
                    check_disjoint(folder.location, target.storage.location)
                except ArcnnError as exc:
                    raise click.UsageError(str(exc)) from exc
            inputs += [(obj.key, folder, obj, str(path / obj.key)) for obj in selected(folder, target.storage, spec)]
        else:
            parent = LocalStorage(parse_location(str(path.parent)))
            inputs.append((path.name, parent, ObjectInfo(path.name, 0, file_etag(path)), str(path)))
    inputs.sort(key=lambda item: item[0])
    works, shown = [], {}
    for group in output_names(inputs, lambda item: item[0], lambda relative: output_extension(spec.fmt, relative),
                              spec.suffix):
        for named in group:
            _, storage, obj, name = named.item
            work = Work(storage, target.storage, obj.key, obj.etag, spec,
                        name=target.name or named.name, clash="" if target.name else named.clash)
            works.append(work)
            shown[id(work)] = name
    return works, shown


@click.command("eval")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--quality", "-q", type=click.IntRange(1, 100), default=None,
              help="JPEG quality to degrade with (paper and color protocols).")
@click.option("--model", default=None,
              help="Model to evaluate. Default: the bundled jpeg-q model nearest the quality for "
                   "--protocol paper; auto (the product's own choice) for color and bucket. "
                   "'none' reports the JPEG input only.")
@click.option("--protocol", type=click.Choice(["paper", "color", "bucket", "history"]), default="paper",
              show_default=True,
              help="paper: grey JPEG of Y (Table 1); color: RGB JPEG 4:2:0; bucket: the realistic "
                   "grid of qualities, subsamplings and re-saves; history: images with a history "
                   "(PNGs of JPEGs, re-saves, other tables, WebP, grey, pristine) against the best "
                   "bundled model told the truth (docs/results.md).")
@click.option("--chroma", type=click.Choice(CHROMA_MODES), default="auto", show_default=True,
              help="color / bucket: how Cb/Cr are handled (as arcnn restore --chroma).")
@click.option("--images", type=click.IntRange(1), default=None, help="Use the first N images only.")
@click.option("--row", "rows", multiple=True, metavar="NAME",
              help="history: measure only this row (repeatable), e.g. --row 'flat tables (10)'.")
@click.option("--device", default=None, help="cpu, cuda or auto (default: ARCNN_DEVICE).")
@click.option("--tile", type=click.IntRange(MIN_TILE), default=None,
              help=f"Tile side in pixels, at least {MIN_TILE} (default: ARCNN_TILE).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="As arcnn restore --precision. fp32 by default, so that a figure does not depend on "
                   "the CPU it was measured on (auto is bf16 on some); bench.precision_all measures "
                   "what bf16 changes.")
@click.option("--tier", type=click.Choice(TIERS), default="standard", show_default=True,
              help="Models auto picks from (color / bucket), as arcnn restore --tier; with "
                   "--protocol paper, fast evaluates the fast-arcnn-qN model nearest the quality.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_command(data_dir: Path, quality: int | None, model: str | None, protocol: str, chroma: str,
                 images: int | None, rows: tuple[str, ...], device: str | None, tile: int | None,
                 precision: str, tier: str, as_json: bool) -> None:
    """Measure JPEG input and restored output on the ground-truth images in DATA_DIR.

    Where and how the tiles run (device, tile, batch size) come from the settings as for
    ``restore``, since they leave the figures as they are; what is measured (model, precision,
    tier, chroma) is only ever what the options say, so that a result never depends on the shell,
    nor (precision fp32 unless asked) on the CPU.
    """
    from arcnn.evaluation import BUCKET_ROWS, bucket_protocol, color_protocol, paper_protocol
    from arcnn.model_names import nearest_quality_model
    from arcnn.registry import bundled
    from arcnn.restoration import Restorer

    if rows and protocol != "history":
        raise click.UsageError("--row selects rows of --protocol history")
    if protocol in ("paper", "color") and quality is None:
        raise click.UsageError(f"--protocol {protocol} needs --quality")
    if model is None and protocol == "paper":
        model = nearest_quality_model(quality, list(bundled()), tier)
        if model is None:
            raise click.ClickException(f"no trained {tier}-tier model is bundled; pass --model NAME or --model none")
    model = "auto" if model is None else (None if model == "none" else model)
    try:
        # the environment says only where the tiles run; the rest is the options' or the defaults
        where = overridden(Settings.from_env(os.environ), device=device, tile=tile)
        settings = Settings(device=where.device, tile=where.tile, batch_size=where.batch_size,
                            chroma=chroma, precision=precision, tier=tier)
        restorer = Restorer.from_settings(settings, model) if model else None
    except (ArcnnError, RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    restore = restorer.restore if restorer else None
    if protocol == "paper":
        net = restorer.model(model) if restorer else None
        with image_bar(data_dir) as bar:
            result = paper_protocol(net, data_dir, quality, *((restorer.device, restorer.tile) if restorer else ()),
                                    progress=lambda _: bar.update())
    elif protocol == "color":
        with image_bar(data_dir) as bar:
            result = color_protocol(restore, data_dir, quality, progress=lambda _: bar.update())
    elif protocol == "history":
        if restorer is None:
            raise click.UsageError("--protocol history compares restorations: give a model, not none")
        from tqdm import tqdm

        from arcnn.evaluation import HISTORY_ROWS, history_protocol

        names = [row.name for row in HISTORY_ROWS]
        unknown = [name for name in rows if name not in names]
        if unknown:
            raise click.UsageError(f"no history row {unknown[0]!r}; the rows: " + ", ".join(map(repr, names)))
        selected = [row for row in HISTORY_ROWS if not rows or row.name in rows]
        told = _told_restorers(settings)
        with tqdm(total=len(selected), desc="history rows", disable=not sys.stderr.isatty()) as bar:
            result = history_protocol(restorer.restore, told, data_dir, selected, images=images,
                                      progress=lambda _: bar.update())
    else:
        from tqdm import tqdm

        with tqdm(total=len(BUCKET_ROWS), desc="bucket rows", disable=not sys.stderr.isatty()) as bar:
            result = bucket_protocol(restore, data_dir, images=images, progress=lambda _: bar.update())
    result = {"data": str(data_dir), "model": model, **result}
    if restorer:
        result["precision"] = restorer.precision
    if protocol in ("bucket", "history"):
        result["chroma"] = chroma
    if tier != "standard":
        result["tier"] = tier
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if protocol == "bucket":
        click.echo(bucket_table(result))
        return
    if protocol == "history":
        click.echo(history_table(result))
        return
    click.echo(f"{data_dir} ({result['images']} images), JPEG q{quality}, protocol {protocol}, model {model}")
    for which in ("input", "restored"):
        if which in result:
            figures = "  ".join(f"{k} {v:.4f}" for k, v in result[which].items())
            click.echo(f"  {which:9s} {figures}")


def _told_restorers(settings: Settings):
    """For the history protocol's oracle: a restore function told the true history, ``qN`` (the
    auto choice for an assumed JPEG quality N), a model name (luma only) or ``name+colour`` (the
    model and the chroma network, as ``--chroma restore`` conditions it), built once each from
    the measured ``settings``."""
    from arcnn.restoration import Restorer

    made: dict[str, Restorer] = {}

    def told(truth: str):
        if truth not in made:
            if truth.startswith("q") and truth[1:].isdigit():
                made[truth] = Restorer.from_settings(dataclasses.replace(settings, input_quality=int(truth[1:])))
            else:
                name, plus, _ = truth.partition("+colour")
                chroma = "restore" if plus else "passthrough"
                made[truth] = Restorer.from_settings(dataclasses.replace(settings, chroma=chroma), name)
        return made[truth].restore
    return told


def history_table(result: dict) -> str:
    """The history protocol's result as a Markdown table (docs/results.md)."""
    lines = [f"{result['data']} ({result['images']} images), protocol history, model {result['model']}, "
             f"chroma {result.get('chroma')}", "",
             "| history | input RGB PSNR | restored | gain | worst image's gain | best bundled model told the "
             "history | share of its gain | invented chroma | images changed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        oracle = f"{r['oracle']}: {r['oracle_gain']:+.2f}" if "oracle" in r else ""
        share = f"{100 * r['share']:.0f}%" if r.get("share") is not None else ""
        invented = f"{r['invented_chroma']:.2f}" if "invented_chroma" in r else ""
        lines.append(f"| {r['row']} | {r['input']:.2f} | {r['restored']:.2f} | {r['gain']:+.2f} | "
                     f"{r['worst_gain']:+.2f} ({r['worst_image']}) | {oracle} | {share} | {invented} | "
                     f"{r['changed']} |")
    lines.append(f"| **mean over rows** (pristine apart) | | | **{result['mean_gain']:+.2f}** | "
                 f"{result['worst_gain']:+.2f} | | | | |")
    return "\n".join(lines)


def image_bar(data_dir: Path):  # noqa: ANN201 (a tqdm bar)
    """A progress bar over the images of ``data_dir`` on stderr (a protocol runs for minutes);
    off when stderr is not a terminal, so scripts and ``--json`` see no bar."""
    from tqdm import tqdm

    from arcnn.images import list_images

    return tqdm(total=len(list_images([data_dir])), desc="images", unit="img", file=sys.stderr,
                disable=not sys.stderr.isatty())


def bucket_table(result: dict) -> str:
    """The bucket protocol's result as a Markdown table (what docs/results.md shows)."""
    restored = "mean_gain" in result
    lines = [f"{result['data']} ({result['images']} images), protocol bucket, model {result['model']}"
             + (f", chroma {result.get('chroma')}" if restored else ""), "",
             "| row | JPEG RGB PSNR | restored | mean gain | worst image's gain |" if restored
             else "| row | JPEG RGB PSNR |",
             "|---|---|---|---|---|" if restored else "|---|---|"]
    for r in result["rows"]:
        if restored:
            lines.append(f"| {r['row']} | {r['input']:.2f} | {r['restored']:.2f} | {r['gain']:+.2f} | "
                         f"{r['worst_gain']:+.2f} ({r['worst_image']}) |")
        else:
            lines.append(f"| {r['row']} | {r['input']:.2f} |")
    if restored:
        lines.append(f"| **mean over rows** | {result['mean_input']:.2f} | {result['mean_restored']:.2f} | "
                     f"**{result['mean_gain']:+.2f}** | {result['worst_gain']:+.2f} |")
    return "\n".join(lines)
