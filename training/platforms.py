"""Platform profiles: what a platform does to an upload, as a declarative file, and its models.

A profile (``training/profiles/<name>.toml``) names a resize rule, one encode and optional
re-encode passes; :func:`load_profile` validates it strictly (a typo must not silently train the
wrong model) and :meth:`Profile.degradation` turns it into the :class:`~training.degradations.Chain`
that :func:`training.data.make_pair` applies to RGB ground truth. Resizing is applied to the
target too, so a platform model learns to undo the codec, not to super-resolve.

:func:`platform_config` builds the training config for ``arcnn train --platform``: a recipe
(``training/configs/platform.toml``) plus the profile's degradation plus a transfer from the
standard model whose JPEG artifacts are as strong as the platform's (:func:`equivalent_quality`).
Measuring the models on a held-out folder put through a profile is a study
(:mod:`training.studies.platforms`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from arcnn.cards import ModelCard
from arcnn.errors import NoWeightsError
from arcnn.images import list_images
from arcnn.metrics import psnr
from arcnn.model_names import is_profile_name, platform_model
from training.data import make_pair
from training.degradations import JPEG, RESAMPLING, SUBSAMPLING, Chain, Resize, WebP

PROFILES_DIR = Path(__file__).parent / "profiles"
PLATFORM_RECIPE = Path(__file__).parent / "configs" / "platform.toml"
CODECS = ("jpeg", "webp")
RESIZE_RULES = ("none", "long_side", "box")


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the offending key."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    assumptions: tuple[str, ...]
    resize: Resize | None
    passes: tuple[JPEG | WebP, ...]
    source: Path

    def degradation(self) -> Chain:
        """Resize (if any), the encode, then each re-encode pass, in that order."""
        return Chain(((self.resize,) if self.resize else ()) + self.passes)

    def describe(self) -> dict:
        """JSON form written into model cards, so a card says exactly what it was trained for."""
        return {"name": self.name, "description": self.description, "assumptions": list(self.assumptions),
                "degradation": self.degradation().describe()}


def _check_keys(where: str, table: dict, allowed: set[str], required: set[str] = frozenset()) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(table))
    if missing:
        raise ProfileError(f"{where}: missing key(s) {', '.join(missing)}")


def _positive_int(where: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ProfileError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _parse_resize(where: str, table: dict | None) -> Resize | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ProfileError(f"{where}: expected a table")
    _check_keys(where, table, {"rule", "long_side", "box", "filter"}, {"rule"})
    rule, filt = table["rule"], table.get("filter", "bicubic")
    if rule not in RESIZE_RULES:
        raise ProfileError(f"{where}.rule: {rule!r} is not one of {', '.join(RESIZE_RULES)}")
    if filt not in RESAMPLING:
        raise ProfileError(f"{where}.filter: {filt!r} is not one of {', '.join(RESAMPLING)}")
    expected = {"none": set(), "long_side": {"long_side"}, "box": {"box"}}[rule]
    given = {k for k in ("long_side", "box") if k in table}
    if given != expected:
        need = " and ".join(sorted(expected)) or "neither long_side nor box"
        raise ProfileError(f"{where}: rule {rule!r} takes {need}")
    if rule == "none":
        return None
    if rule == "long_side":
        return Resize(long_side=_positive_int(f"{where}.long_side", table["long_side"]), filter=filt)
    box = table["box"]
    if not isinstance(box, list) or len(box) != 2:
        raise ProfileError(f"{where}.box: expected [width, height], got {box!r}")
    return Resize(box=(_positive_int(f"{where}.box", box[0]), _positive_int(f"{where}.box", box[1])),
                  filter=filt)


def _parse_encode(where: str, table: object) -> JPEG | WebP:
    if not isinstance(table, dict):
        raise ProfileError(f"{where}: expected a table with codec and quality")
    codec = table.get("codec")
    if codec not in CODECS:
        raise ProfileError(f"{where}.codec: {codec!r} is not one of {', '.join(CODECS)}")
    allowed = {"codec", "quality", "subsampling"} if codec == "jpeg" else {"codec", "quality"}
    if codec == "webp" and "subsampling" in table:
        raise ProfileError(f"{where}.subsampling: lossy WebP is always 4:2:0; remove the key")
    _check_keys(where, table, allowed, {"quality"})
    quality = table["quality"]
    if not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100:
        raise ProfileError(f"{where}.quality: expected an integer 1-100, got {quality!r}")
    if codec == "webp":
        return WebP(quality)
    subsampling = table.get("subsampling", "4:2:0")
    if subsampling not in SUBSAMPLING:
        raise ProfileError(f"{where}.subsampling: {subsampling!r} is not one of {', '.join(SUBSAMPLING)}")
    return JPEG(quality, subsampling)


def parse_profile(raw: dict, source: Path) -> Profile:
    """Validate a profile's TOML content; every problem is a :class:`ProfileError` naming the key."""
    where = str(source)
    _check_keys(where, raw, {"name", "description", "assumptions", "resize", "encode", "reencode"}, {"encode"})
    name = raw.get("name", source.stem)
    if not isinstance(name, str) or not is_profile_name(name):
        raise ProfileError(f"{where}.name: {name!r} must be lower-case letters, digits and dashes "
                           "(it names the model platform-<name>)")
    assumptions = raw.get("assumptions", [])
    if not isinstance(assumptions, list) or not all(isinstance(a, str) for a in assumptions):
        raise ProfileError(f"{where}.assumptions: expected a list of strings")
    reencode = raw.get("reencode", [])
    if not isinstance(reencode, list):
        raise ProfileError(f"{where}.reencode: expected an array of tables ([[reencode]])")
    passes = (_parse_encode(f"{where}.encode", raw["encode"]),
              *(_parse_encode(f"{where}.reencode[{i}]", t) for i, t in enumerate(reencode)))
    return Profile(name, str(raw.get("description", "")), tuple(assumptions),
                   _parse_resize(f"{where}.resize", raw.get("resize")), passes, source)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(profile: str | Path) -> Profile:
    """A profile by file path, or by the name of a shipped profile (``twitter``)."""
    path = Path(profile)
    if not path.is_file():
        path = PROFILES_DIR / f"{profile}.toml"
    if not path.is_file():
        raise ProfileError(f"no profile file {profile!r}; shipped profiles: {', '.join(available_profiles())}")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
    return parse_profile(raw, path)


def equivalent_quality(profile: Profile, images: list[Image.Image], qualities: list[int]) -> int:
    """The JPEG quality (among ``qualities``) whose Y-PSNR on ``images`` is closest to the profile's.

    This is how "the nearest standard model" is defined for any profile, JPEG or not: a WebP or
    re-encoded pipeline has no single JPEG quality, but its loss is as strong as some quality's.
    Images go through the profile's own resize first, so only the codecs are compared.
    """
    if not qualities:
        raise ValueError("no JPEG qualities to compare with")
    resize = (profile.resize,) if profile.resize else ()

    def mean_psnr(degradation: Chain) -> float:
        return float(np.mean([psnr(*make_pair(img, degradation, colour=True)) for img in images]))

    target = mean_psnr(profile.degradation())
    scores = {q: abs(mean_psnr(Chain(resize + (JPEG(q),))) - target) for q in qualities}
    return min(scores, key=lambda q: (scores[q], q))


def standard_models(architecture: dict | None = None) -> dict[str, int]:
    """Bundled single-quality JPEG models: name -> quality (from their cards); with
    ``architecture``, only those built that way (the layers a recipe copies must fit)."""
    from arcnn.registry import bundled

    return {name: card.degradation["quality"] for name, card in bundled().items()
            if card.degradation.get("type") == "jpeg" and architecture in (None, card.architecture)}


def nearest_standard(profile: Profile, image_paths: list[Path], limit: int = 10,
                     architecture: dict | None = None) -> str:
    """The bundled ``jpeg-qN`` model (of ``architecture``, if given) whose training artifacts best
    match the profile's."""
    models = standard_models(architecture)
    if not models:
        raise NoWeightsError("no standard jpeg-qN model is bundled to transfer from; pass --base")
    images = []
    for path in image_paths[:limit]:
        with Image.open(path) as img:
            img.load()
            images.append(img)
    quality = equivalent_quality(profile, images, sorted(set(models.values())))
    return min((n for n, q in models.items() if q == quality))


def platform_config(profile: Profile, data_root: Path, recipe: Path = PLATFORM_RECIPE,
                    base: str | None = None, train_dirs: list[str] | None = None,
                    val_dirs: list[str] | None = None, steps: int | None = None):
    """The :class:`TrainConfig` of ``platform-<name>``: recipe + profile + resolved transfer base.

    ``base`` overrides the recipe's ``transfer.base``; a base of ``"nearest"`` is resolved here,
    on the validation images (never on a test set), so the card records the model actually used.
    """
    from training.train import TrainConfig

    with open(recipe, "rb") as f:
        raw = tomllib.load(f)
    raw.update(name=platform_model(profile.name), colour=True,
               degradation=profile.degradation().describe(),
               description=f"AR-CNN for the '{profile.name}' platform profile: {profile.description}")
    for key, value in (("train_dirs", train_dirs), ("val_dirs", val_dirs), ("steps", steps)):
        if value:
            raw[key] = value
    cfg = TrainConfig(**raw)
    if cfg.transfer:
        transfer = dict(cfg.transfer)
        if base:
            transfer["base"] = base
        if transfer.get("base") == "nearest":
            transfer["base"] = nearest_standard(profile, list_images([data_root / d for d in cfg.val_dirs]),
                                                cfg.val_images, cfg.architecture)
        cfg.transfer = transfer
    return cfg


def record_profile(card_path: Path, profile: Profile, evaluation: dict | None = None) -> None:
    """Add the profile (and optionally a held-out evaluation) to a platform model's card.

    A base given as a file path (not a bundled name) may not travel with the model, so the
    card keeps what its own card said: what it was, how long it had trained.
    """
    card = ModelCard.read(card_path)
    card.platform = profile.describe()
    base = (card.transfer or {}).get("base", "")
    if base.endswith(".safetensors") and Path(base).with_suffix(".json").exists():
        base_card = ModelCard.read(Path(base))
        card.transfer["base_card"] = {k: getattr(base_card, k) for k in
                                      ("description", "degradation", "steps", "samples_seen", "metrics")}
    if evaluation is not None:
        card.metrics["held_out"] = evaluation
    card.write(card_path)
