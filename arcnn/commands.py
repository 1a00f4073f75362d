"""CLI commands for the library: ``restore``, ``eval``, ``models``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from arcnn.errors import ArcnnError, NoWeightsError
from arcnn.settings import PRECISIONS

def expand_inputs(paths: tuple[Path, ...]) -> list[Path]:
    """Files as given; folders expanded (recursively) to the images inside, in sorted order."""
    from arcnn.images import IMAGE_SUFFIXES

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files


@click.command("restore")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the restored images (<stem>.<format>).")
@click.option("--model", default="auto", show_default=True,
              help="Bundled model name, a .safetensors path, or auto (nearest estimated JPEG quality).")
@click.option("--tile", type=int, default=None, help="Tile side in pixels (default: ARCNN_TILE).")
@click.option("--batch-size", type=int, default=None, help="Tiles per forward pass (default: ARCNN_BATCH_SIZE).")
@click.option("--device", default=None, help="cpu, cuda or auto (default: ARCNN_DEVICE).")
@click.option("--format", "fmt", type=click.Choice(["png", "jpeg", "webp"]), default="png", show_default=True)
@click.option("--chroma", type=click.Choice(["passthrough", "restore"]), default="passthrough",
              show_default=True, help="Colour images: pass Cb/Cr through, or restore them too.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="auto: fp16 on CUDA, fp32 on CPU; bf16 is faster on some CPUs, slower on "
                   "others (default: ARCNN_PRECISION).")
def restore_command(paths: tuple[Path, ...], outdir: Path, model: str, tile: int | None,
                    batch_size: int | None, device: str | None, fmt: str, chroma: str,
                    precision: str | None) -> None:
    """Restore image files or folders into OUTDIR; bad files are reported and skipped."""
    from tqdm import tqdm

    from arcnn.images import EXTENSIONS, encode_image, read_image
    from arcnn.restoration import Restorer
    from arcnn.settings import get_settings

    try:
        settings = get_settings()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        restorer = Restorer.load(model, device or settings.device, tile or settings.tile,
                                 batch_size or settings.batch_size, chroma,
                                 precision or settings.precision)
    except (ArcnnError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    files = expand_inputs(paths)
    if not files:
        raise click.ClickException("no input images found")
    outdir.mkdir(parents=True, exist_ok=True)
    failed: list[tuple[Path, str]] = []
    written: set[Path] = set()
    for path in tqdm(files, disable=len(files) < 2, unit="img", desc="restoring"):
        target = outdir / f"{path.stem}{EXTENSIONS[fmt]}"
        try:
            if target in written:
                raise ArcnnError(f"output {target.name} already written from another input with that stem")
            img = read_image(path, settings.max_pixels)
            out = restorer.restore(img)
            target.write_bytes(encode_image(out, fmt, source=img, png_level=settings.png_compress_level))
            written.add(target)
        except NoWeightsError as exc:
            raise click.ClickException(str(exc)) from exc
        except ArcnnError as exc:
            failed.append((path, str(exc)))
            tqdm.write(f"error: {path}: {exc}", file=sys.stderr)
    done = len(files) - len(failed)
    click.echo(f"restored {done} of {len(files)} image(s) into {outdir}"
               + (f"; {len(failed)} failed" if failed else ""), err=True)
    if failed:
        sys.exit(1)


@click.command("eval")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--quality", "-q", type=click.IntRange(1, 100), required=True, help="JPEG quality to degrade with.")
@click.option("--model", default=None,
              help="Model to evaluate (default: the bundled jpeg-q model nearest the quality); "
                   "'none' reports the JPEG input only.")
@click.option("--protocol", type=click.Choice(["paper", "color"]), default="paper", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--tile", type=int, default=512, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_command(data_dir: Path, quality: int, model: str | None, protocol: str, device: str, tile: int,
                 as_json: bool) -> None:
    """Measure PSNR / SSIM / PSNR-B of JPEG input and restored output on DATA_DIR."""
    from arcnn.evaluation import color_protocol, paper_protocol
    from arcnn.registry import bundled
    from arcnn.restoration import Restorer, nearest_quality_model

    if model is None:
        model = nearest_quality_model(quality, list(bundled()))
        if model is None:
            raise click.ClickException("no trained jpeg-q* model is bundled; pass --model NAME or --model none")
    model = None if model == "none" else model
    try:
        restorer = Restorer.load(model, device, tile) if model else None
    except (ArcnnError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    if protocol == "paper":
        net = restorer.model(model) if restorer else None
        result = paper_protocol(net, data_dir, quality, restorer.device if restorer else "cpu", tile)
    else:
        result = color_protocol(restorer.restore if restorer else None, data_dir, quality)
    result = {"data": str(data_dir), "model": model, **result}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{data_dir} ({result['images']} images), JPEG q{quality}, protocol {protocol}, model {model}")
    for which in ("input", "restored"):
        if which in result:
            figures = "  ".join(f"{k} {v:.4f}" for k, v in result[which].items())
            click.echo(f"  {which:9s} {figures}")


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the cards as JSON.")
def models_command(as_json: bool) -> None:
    """List the bundled trained models with their cards."""
    from arcnn.registry import bundled

    cards = bundled()
    if as_json:
        click.echo(json.dumps(cards, indent=2))
        return
    if not cards:
        click.echo("no trained weights are bundled yet (see training/configs and `arcnn train`)")
        return
    for name, card in cards.items():
        v = card.get("metrics", {}).get("validation", {})
        click.echo(f"{name:16s} {card.get('description', '')}")
        click.echo(f"{'':16s} steps {card.get('steps')}, {card.get('wall_time_s')} s on {card.get('device')}, "
                   f"val PSNR {v.get('psnr', float('nan')):.3f} dB (input {v.get('input_psnr', float('nan')):.3f})")


COMMANDS: list[click.Command] = [restore_command, eval_command, models_command]
