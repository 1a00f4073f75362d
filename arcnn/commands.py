"""CLI commands for the library: ``restore`` and ``eval`` (``models`` is in :mod:`arcnn.catalogue`),
and the inference options ``arcnn run`` shares with ``restore``."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from arcnn.errors import ArcnnError, NoWeightsError
from arcnn.policy import CHROMA_MODES, TIERS
from arcnn.settings import PRECISIONS, Settings

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


def fate_line(source: object, target: object, label: str, why: str) -> str:
    """The line ``arcnn restore`` and ``arcnn run`` print for each file: ``SOURCE -> TARGET:
    LABEL (WHY)``, e.g. ``in/a.jpg -> out/a.png: jpeg-q20+colour (estimated q18, 4:2:0)``."""
    return f"{source} -> {target}: {label} ({why})"


@click.command("restore")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the restored images: each input's path under the folder given, "
                   "with the format's extension (docs/worker.md: output names).")
@click.option("--model", default="auto", show_default=True,
              help="Bundled model name, a .safetensors path, or auto (nearest estimated JPEG quality).")
@click.option("--format", "fmt", type=click.Choice(["png", "jpeg", "webp"]), default="png", show_default=True)
@inference_options
def restore_command(paths: tuple[Path, ...], outdir: Path, model: str, fmt: str, tile: int | None,
                    batch_size: int | None, device: str | None, chroma: str | None,
                    precision: str | None, tier: str | None, quiet: bool) -> None:
    """Restore image files or folders into OUTDIR; bad files are reported and skipped.

    Each file gets one line: what ran and why (``jpeg-q20+colour (estimated q18, 4:2:0)``), or
    that it passed through and why, or why it failed."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from PIL import Image
    from tqdm import tqdm

    from arcnn.images import EXTENSIONS, encode_image, format_losses, read_image
    from arcnn.naming import local_inputs, output_names
    from arcnn.restoration import Choice, Restorer

    try:
        settings = overridden(Settings.from_env(os.environ), tile=tile, batch_size=batch_size, device=device,
                              chroma=chroma, precision=precision, tier=tier)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        restorer = Restorer.load(model, settings.device, settings.tile, settings.batch_size, settings.chroma,
                                 settings.precision, tier=settings.tier, default_model=settings.default_model,
                                 auto_max_quality=settings.auto_max_quality)
    except (ArcnnError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    # The same selection and output names as `arcnn run DIR` (arcnn/naming.py).
    files = [named for group in output_names(local_inputs(paths), lambda pair: pair[0], EXTENSIONS[fmt])
             for named in group]
    if not files:
        raise click.ClickException("no input images found")
    outdir.mkdir(parents=True, exist_ok=True)
    failed: list[tuple[Path, str]] = []

    def write(path: Path, target: Path, img: Image.Image, out: Image.Image, choice: Choice) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode_image(out, fmt, source=img, png_level=settings.png_compress_level))
        if not quiet:
            tqdm.write(fate_line(path, target, choice.label, choice.why))
        for loss in format_losses(out, fmt):
            tqdm.write(f"warning: {path}: {loss}", file=sys.stderr)

    def fail(path: Path, exc: ArcnnError) -> None:
        failed.append((path, str(exc)))
        tqdm.write(f"error: {path}: {exc}", file=sys.stderr)

    def settle(pending: tuple[Path, Future] | None) -> None:
        """Wait for a file's write, if one is pending, and report it if it failed."""
        if pending is not None:
            try:
                pending[1].result()
            except ArcnnError as exc:
                fail(pending[0], exc)

    # One I/O thread reads the next file and writes the previous result while the current one
    # is restored, so decoding and encoding overlap the network instead of adding to it.
    bar = quiet or len(files) < 2 or not sys.stderr.isatty()
    with ThreadPoolExecutor(1, thread_name_prefix="arcnn-io") as io:
        reads = io.submit(read_image, files[0].item[1], settings.max_pixels)
        written: tuple[Path, Future] | None = None
        for i, named in enumerate(tqdm(files, disable=bar, unit="img", desc="restoring")):
            path, read = named.item[1], reads
            if i + 1 < len(files):
                reads = io.submit(read_image, files[i + 1].item[1], settings.max_pixels)
            try:
                img = read.result()
                choice = restorer.choose(img)
                out = restorer.restore(img, choice)
            except NoWeightsError as exc:
                raise click.ClickException(str(exc)) from exc
            except ArcnnError as exc:
                settle(written)  # the previous file's line first: lines follow the input order
                written = None
                fail(path, exc)
                continue
            settle(written)
            written = (path, io.submit(write, path, outdir / named.output_name(), img, out, choice))
        settle(written)
    done = len(files) - len(failed)
    click.echo(f"restored {done} of {len(files)} image(s) into {outdir}"
               + (f"; {len(failed)} failed" if failed else ""), err=True)
    if failed:
        sys.exit(1)


@click.command("eval")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--quality", "-q", type=click.IntRange(1, 100), default=None,
              help="JPEG quality to degrade with (paper and color protocols).")
@click.option("--model", default=None,
              help="Model to evaluate. Default: the bundled jpeg-q model nearest the quality for "
                   "--protocol paper; auto (the product's own choice) for color and bucket. "
                   "'none' reports the JPEG input only.")
@click.option("--protocol", type=click.Choice(["paper", "color", "bucket"]), default="paper", show_default=True,
              help="paper: grey JPEG of Y (Table 1); color: RGB JPEG 4:2:0; bucket: the realistic "
                   "grid of qualities, subsamplings and re-saves (docs/results.md).")
@click.option("--chroma", type=click.Choice(CHROMA_MODES), default="auto", show_default=True,
              help="color / bucket: how Cb/Cr are handled (as arcnn restore --chroma).")
@click.option("--images", type=click.IntRange(1), default=None, help="Use the first N images only.")
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
                 images: int | None, device: str | None, tile: int | None, precision: str, tier: str,
                 as_json: bool) -> None:
    """Measure JPEG input and restored output on the ground-truth images in DATA_DIR.

    Where and how the tiles run (device, tile, batch size) come from the settings as for
    ``restore``, since they leave the figures as they are; what is measured (model, precision,
    tier, chroma) is only ever what the options say, so that a result never depends on the shell,
    nor (precision fp32 unless asked) on the CPU.
    """
    from arcnn.evaluation import BUCKET_ROWS, bucket_protocol, color_protocol, paper_protocol
    from arcnn.registry import bundled
    from arcnn.restoration import Restorer, nearest_quality_model

    if protocol != "bucket" and quality is None:
        raise click.UsageError(f"--protocol {protocol} needs --quality")
    if model is None and protocol == "paper":
        model = nearest_quality_model(quality, list(bundled()), tier)
        if model is None:
            raise click.ClickException(f"no trained {tier}-tier model is bundled; pass --model NAME or --model none")
    model = "auto" if model is None else (None if model == "none" else model)
    try:
        settings = overridden(Settings.from_env(os.environ), device=device, tile=tile)
        restorer = (Restorer.load(model, settings.device, settings.tile, settings.batch_size, chroma=chroma,
                                  precision=precision, tier=tier) if model else None)
    except (ArcnnError, RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    restore = restorer.restore if restorer else None
    if protocol == "paper":
        net = restorer.model(model) if restorer else None
        result = paper_protocol(net, data_dir, quality, *((restorer.device, restorer.tile) if restorer else ()))
    elif protocol == "color":
        result = color_protocol(restore, data_dir, quality)
    else:
        from tqdm import tqdm

        with tqdm(total=len(BUCKET_ROWS), desc="bucket rows", disable=not sys.stderr.isatty()) as bar:
            result = bucket_protocol(restore, data_dir, images=images, progress=lambda _: bar.update())
    result = {"data": str(data_dir), "model": model, **result}
    if restorer:
        result["precision"] = restorer.precision
    if protocol == "bucket":
        result["chroma"] = chroma
    if tier != "standard":
        result["tier"] = tier
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if protocol == "bucket":
        click.echo(bucket_table(result))
        return
    click.echo(f"{data_dir} ({result['images']} images), JPEG q{quality}, protocol {protocol}, model {model}")
    for which in ("input", "restored"):
        if which in result:
            figures = "  ".join(f"{k} {v:.4f}" for k, v in result[which].items())
            click.echo(f"  {which:9s} {figures}")


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
