"""What a platform profile does, and what the models do on data put through it (docs/platforms.md).

    python -m training.studies.platforms show twitter
    python -m training.studies.platforms eval twitter --data ../shared/data/Kodak24 --record

``show`` prints a profile's validated form. ``eval`` reports degraded input vs. standard models
vs. the platform model on a held-out folder put through the profile (:func:`evaluate_platform`),
and with ``--record`` stores the result in the platform model's card. Making the profiles'
models is :mod:`training.platforms` (``arcnn train --platform``); this module only measures them.
Like the other commands, it reads the environment (:class:`arcnn.settings.Settings`: what
``--model auto`` would apply) and passes the values down.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from PIL import Image

from arcnn.images import list_images
from arcnn.model_names import BLIND_MODEL, platform_model
from training.data import make_pair
from training.degradations import JPEG
from training.platforms import Profile, ProfileError, load_profile, record_profile


def auto_choice(profile: Profile, names: list[str], default_model: str = "passthrough",
                auto_max_quality: int = 100) -> str:
    """The model ``arcnn restore --model auto`` applies to this platform's files, blindly.

    JPEG output: the quality its tables carry (the last pass's) goes through the same
    :func:`~arcnn.restoration.auto_model` rule; anything else has no tables, so auto applies
    ``default_model``. Both settings are the command's (``ARCNN_DEFAULT_MODEL``,
    ``ARCNN_AUTO_MAX_QUALITY``), passed in as ``arcnn restore`` passes them to its restorer.
    """
    from arcnn.restoration import auto_model

    last = profile.passes[-1]
    quality = last.quality if isinstance(last, JPEG) else None
    return auto_model(quality, names, default_model, auto_max_quality)


def evaluate_platform(profile: Profile, folder: Path, models: list[str], device: str = "cpu") -> dict:
    """PSNR / SSIM / PSNR-B on Y of the degraded input and of each model, on ``folder`` via the profile."""
    from arcnn.evaluation import evaluate_planes
    from arcnn.registry import load_named

    clean, degraded = [], []
    for path in list_images([folder]):
        with Image.open(path) as img:
            img.load()
            c, d = make_pair(img, profile.degradation(), colour=True)
        clean.append(c)
        degraded.append(d)
    result = {"profile": profile.name, "data": str(folder), "images": len(clean), "models": {}}
    result["input"] = evaluate_planes(None, clean, degraded)["input"]
    for name in models:
        model, _ = load_named(name)
        result["models"][name] = evaluate_planes(model, clean, degraded, device)["restored"]
    return result


def markdown_rows(result: dict) -> list[str]:
    """Table rows (``| profile | what | PSNR | SSIM | PSNR-B |``) for docs/platforms.md."""
    def row(what: str, m: dict) -> str:
        return f"| {result['profile']} | {what} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['psnr_b']:.2f} |"

    return [row("degraded input", result["input"])] + [row(f"`{n}`", m) for n, m in result["models"].items()]


@click.group("platforms")
def platforms_command() -> None:
    """Platform profiles: show them, evaluate models on data put through them."""


@platforms_command.command("show")
@click.argument("profile")
def show_profile_command(profile: str) -> None:
    """Print a profile's validated form (what it does to an upload)."""
    try:
        click.echo(json.dumps(load_profile(profile).describe(), indent=2))
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc


@platforms_command.command("eval")
@click.argument("profile")
@click.option("--data", "folder", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Held-out ground-truth folder (e.g. ../shared/data/Kodak24: evaluate on it, never tune).")
@click.option("--model", "models", multiple=True,
              help="Model(s) to compare (repeatable). Default: what --model auto would apply, the "
                   "platform model's transfer base, jpeg-any if bundled, and platform-<name>.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the result as JSON here.")
@click.option("--record", is_flag=True, help="Store the result in the platform model's card.")
def eval_profile_command(profile: str, folder: Path, models: tuple[str, ...], device: str,
                         json_path: Path | None, record: bool) -> None:
    """Degraded input vs. standard models vs. the platform model, on FOLDER through PROFILE."""
    from arcnn.registry import BUNDLED_DIR, bundled
    from arcnn.settings import Settings

    try:
        prof = load_profile(profile)
        settings = Settings.from_env(os.environ)
    except (ProfileError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    own = platform_model(prof.name)
    cards = bundled()
    if not models:
        if own not in cards:
            raise click.ClickException(f"{own} is not bundled; train it or pass --model")
        base = (cards[own].transfer or {}).get("base")
        auto = auto_choice(prof, list(cards), settings.default_model, settings.auto_max_quality)
        models = tuple(dict.fromkeys(m for m in (auto, base, BLIND_MODEL, own) if m in cards))
    result = evaluate_platform(prof, folder, list(models), device)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if record and own in cards:
        record_profile(BUNDLED_DIR / f"{own}.json", prof,
                       {"data": folder.name, "images": result["images"], "input": result["input"],
                        **result["models"]})
    click.echo(f"{folder} ({result['images']} images) through profile {prof.name}, metrics on Y")
    click.echo("| profile | output | PSNR (dB) | SSIM | PSNR-B (dB) |\n|---|---|---|---|---|")
    click.echo("\n".join(markdown_rows(result)))


if __name__ == "__main__":
    platforms_command()
