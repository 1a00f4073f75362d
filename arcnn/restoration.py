"""Restoring whole images: mode handling, colour, model choice, around the tiled engine.

Colour images are taken to the JPEG/JFIF YCbCr space, the one their decoder came from. Two
networks work on them: a luminance model (``jpeg-qN``, trained on Y) restores Y, and the chroma
network (``colour``, :class:`~arcnn.architectures.ChromaNet`) restores Cb/Cr guided by the
decoded Y, conditioned on the JPEG's quality and chroma subsampling. ``chroma="auto"`` runs the
chroma network where the measured policy (:mod:`arcnn.policy`) says it helps, ``"restore"`` on
every colour image, ``"passthrough"`` never (docs/colour.md has the measurements). Alpha is
copied untouched. Palette, CMYK and other modes are converted to RGB(A); 16-bit grayscale is
restored at 16-bit precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn

from arcnn.acceleration import CudaGraphed, default_precision, prepare
from arcnn.cards import ModelCard
from arcnn.colour import full_to_studio_luma, rgb_to_ycbcr_planes, studio_to_full_luma, to_uint8, ycbcr_planes_to_rgb_uint8
from arcnn.errors import NoWeightsError
from arcnn.frequency_mask import apply_mask, chroma_keep, coarser_parts, frequency_mask, mask_chroma_change, model_quality
from arcnn.model_names import CHROMA_MODEL, CHROMA_MODELS, TIERS, nearest_quality_model, quality_models
from arcnn.policy import CHROMA_MODES, AutoPolicy, nearest_grid_point, shipped_policy
from arcnn.reading import WEBP_NEUTRAL_TOLERANCE, Reading, neutral_pixels, read_input
from arcnn.registry import bundled, is_bundled, load_named
from arcnn.settings import Settings
from arcnn.tiling import auto_batch_size, restore_in_place, restore_plane, restore_planes

PASSTHROUGH = "passthrough"
"""Pseudo-model name: the image goes out as it came in (re-encoded, metadata kept). ``auto``
picks it where every bundled model was measured to make the input worse (docs/model-choice.md)."""

GREY_MODES = ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I")


@dataclass(frozen=True)
class Choice:
    """What is done to one image: the luminance model (or passthrough) and, for the chroma
    network, the (quality, subsampled) it is conditioned on (None: chroma passes through)."""

    luma: str
    chroma: tuple[int, bool] | None = None
    chroma_model: str = CHROMA_MODEL
    why: str = field(default="", compare=False)
    """Why, in a few words, for the per-file line users read (``estimated q18, 4:2:0``)."""
    reading: Reading | None = field(default=None, compare=False)
    """What was read of the input's history (job reports and output metadata record it)."""
    mask: np.ndarray | None = field(default=None, compare=False)
    """The DCT frequencies (8 x 8 bools) the luma model's change is kept at, on the grid of
    ``reading``; None: all (:mod:`arcnn.frequency_mask`)."""
    parts: tuple[tuple[str, np.ndarray], ...] = field(default=(), compare=False)
    """Lower-quality luma models and the frequencies (8 x 8 bools, on the grid of ``reading``)
    where each one's output replaces ``luma``'s: a non-IJG file much coarser than ``luma``'s
    steps there (:func:`arcnn.frequency_mask.coarser_parts`)."""
    chroma_mask: np.ndarray | None = field(default=None, compare=False)
    """Where a file's chroma steps are too mild for the chroma network: the chroma frequencies
    (8 x 8 bools, on the chroma plane's grid) at which its change to the file's chroma samples is
    kept, beside its upsampling (:func:`arcnn.frequency_mask.mask_chroma_change`); None: all."""

    @property
    def label(self) -> str:
        """The name jobs and reports record: ``jpeg-q20+colour``, ``colour`` (chroma only), ..."""
        if self.chroma is None:
            return self.luma
        return self.chroma_model if self.luma == PASSTHROUGH else f"{self.luma}+{self.chroma_model}"


NEUTRAL_MIN_QUALITY = 25
"""From this JPEG quality up, a pixel decoded neutral stays neutral through the chroma network.
Below it JPEG's chroma steps (IJG's chroma DC step is 17 x 5000 / q / 100 DCT units, more than 4
levels of Cb/Cr below q25) quantise faint colour to exactly neutral, so a neutral pixel there
does not mean the photo had no colour: the chroma network restoring it gained +0.14 dB at q5 on
Kodak24's bucket (docs/results.md)."""


def condition_planes(quality: int, subsampled: bool, shape: tuple[int, int]) -> np.ndarray:
    """The chroma network's two condition planes, 2 x H x W on the [0, 255] scale of the image
    planes: the JPEG quality (1-100) and 255 where the chroma was subsampled. Read-only
    broadcast views: they cost no memory whatever the image size."""
    values = np.array([quality, 255.0 if subsampled else 0.0], dtype=np.float32)
    return np.broadcast_to(values[:, None, None], (2, *shape))


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA device is available")
    return torch.device(device)


def auto_model(quality: int | None, names: list[str], default: str, max_quality: int,
               policy: AutoPolicy | None = None, subsampled: bool = True, tier: str = "standard") -> str:
    """The luminance model ``--model auto`` applies to an input of estimated JPEG quality ``quality``.

    A JPEG gets the model the measured policy names for its quality and chroma subsampling
    (``policy``, by default the shipped one: a nearby ``jpeg-qN``, or passthrough where no model
    helped on validation).
    Above ``max_quality`` (``ARCNN_AUTO_MAX_QUALITY``, an operator's cut) it passes through. An
    input without JPEG tables (PNG, WebP, ...) gets ``default`` (``ARCNN_DEFAULT_MODEL``, itself
    passthrough unless an operator knows better). ``tier`` picks the model family and its policy.
    """
    if quality is None:
        return default
    if quality > max_quality:
        return PASSTHROUGH
    policy = policy or shipped_policy(tier)
    if policy is not None:
        choice = policy.luma_model(quality, subsampled)
        if choice == PASSTHROUGH or choice in names:
            return choice
    return nearest_quality_model(quality, names, tier) or default


UPSAMPLING_MAX_QUALITY = 96
"""The mildest chroma equivalent (:attr:`~arcnn.reading.Reading.chroma_quality`) of a non-IJG file
for which the chroma network runs masked where its whole change would not
(:meth:`Restorer.choose_chroma`: its upsampling, and its change to the chroma samples at the
frequencies the file's steps hide). ``python -m training.studies.chroma_fallback`` on BSDS500
val (40 images, 4:2:0): one image of fine feathers lost more the milder the file's chroma, with
flat tables of 9s (q96) +0.06 dB, 8s (q96) -0.03, 7s (q97) -0.08, 4s (q98) -0.27, 3s (q99) -0.39,
and ramps of 7 (q96) +0.02, 6 (q97) -0.06. So from q97 on chroma passes through, as the policy
says for IJG q95 and above."""

WEBP_POLICY = {10: "webp-q20", 20: "webp-q20", 30: "webp-q40", 40: "webp-q60", 50: "webp-q60",
               60: "webp-q60", 70: "webp-q80", 80: "webp-q80", 90: PASSTHROUGH}
"""What ``auto`` applies to a lossy WebP's luma by the quality its quantiser reads as (the nearest
grid point): per quality, the luma model of the choice (with :data:`WEBP_CHROMA`'s) with the best
mean RGB gain on BSDS500 val (full-chroma, 40 images) among those that made no image more than
0.05 dB worse, else passthrough (``python -m training.studies.history_policy``,
docs/model-choice.md). At q90 every choice made some image worse."""

WEBP_CHROMA: dict[int, int | None] = {10: 80, 20: 80, 30: 80, 40: 80, 50: 80, 60: 80, 70: 80, 80: 95,
                                      90: None}
"""For a lossy WebP by the quality it reads as (the nearest grid point): the JPEG quality the
standard chroma network (``colour``) is conditioned on, 4:2:0, or None (chroma passes through).
WebP always halves chroma, as a 4:2:0 JPEG does, and the network trained on JPEGs undoes much of
it: +0.2 to +0.4 dB RGB beside the luma model's. Chosen with :data:`WEBP_POLICY` by the same
study and rule."""

TABLES_CHROMA_MAX = 95
"""The mildest condition the chroma network gets for a non-IJG file's chroma table (the highest
quality it was trained at). Where the JPEG policy at the luma quality read does not run the
chroma network, a non-IJG file's chroma table decides by its own equivalent quality
(:attr:`~arcnn.reading.Reading.chroma_quality`), through the same policy: a flat table of 16s
reads q94 on luma (chroma passes through) and q92 on chroma (run: +0.47 dB alone on BSDS500 val,
no image worse); a flat table of 10s has chroma like q95, where the policy passes chroma through
(conditioned on 95 it gained +0.39 dB mean but made one image 0.29 dB worse), so it gets the
network masked (:data:`UPSAMPLING_MAX_QUALITY`)."""

WEBP_CHROMA_RESTORE = 95
"""``--chroma restore`` on a WebP the table passes through: the mildest condition."""


def webp_model(quality: int | None, names: list[str]) -> str:
    """The model :data:`WEBP_POLICY` names for a lossy WebP of this quality, if bundled."""
    if quality is None:
        return PASSTHROUGH
    choice = nearest_grid_point(WEBP_POLICY, quality)
    return choice if choice in names else PASSTHROUGH


def webp_chroma(quality: int | None) -> int | None:
    """The chroma network's condition :data:`WEBP_CHROMA` names for a lossy WebP of this quality."""
    return None if quality is None else nearest_grid_point(WEBP_CHROMA, quality)


class Restorer:
    """Holds loaded models and restores PIL images with them.

    Models are loaded through :func:`arcnn.acceleration.prepare` (channels-last, fast heads,
    ``precision``: ``auto`` is fp16 on CUDA, bf16 on CPUs where it runs fast and float32 on
    other CPUs: :func:`~arcnn.acceleration.default_precision`);
    ``cuda_graphs`` replays each tile shape as a CUDA graph. The library reads no environment:
    what ``auto`` does with inputs it cannot place (``default_model``) and the operator's quality
    cut (``auto_max_quality``) are passed in by the commands, from the settings.
    """

    def __init__(self, model: str = "auto", device: str = "auto", tile: int = 0,
                 batch_size: int = 0, chroma: str = "auto", precision: str = "auto",
                 cuda_graphs: bool = False, *, tier: str = "standard", default_model: str = PASSTHROUGH,
                 auto_max_quality: int = 100, input_quality: int = 0) -> None:
        if chroma not in CHROMA_MODES:
            raise ValueError(f"chroma must be one of {', '.join(CHROMA_MODES)}, not {chroma!r}")
        if tier not in TIERS:
            raise ValueError(f"tier must be one of {', '.join(TIERS)}, not {tier!r}")
        self.default = model
        self.device = str(resolve_device(device))
        self.chroma, self.tier = chroma, tier
        self.tile = tile  # 0: chosen per network by the tiler (tiling.auto_tile)
        self.batch_size = batch_size or auto_batch_size(self.device)
        self.default_model, self.auto_max_quality = default_model, auto_max_quality
        if not 0 <= input_quality <= 100:
            raise ValueError(f"input quality must be 1-100 (0: read it from the file), not {input_quality}")
        self.input_quality = input_quality
        self.precision = default_precision(self.device) if precision == "auto" else precision
        self.cuda_graphs = cuda_graphs and self.device.startswith("cuda")
        self._models: dict[str, nn.Module] = {}
        self.cards: dict[str, ModelCard] = {}
        self._names: list[str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, model: str = "auto", **options: object) -> Restorer:
        """The restorer the settings describe, its fixed model loaded now as :meth:`load` does:
        the one place commands and the job engine build it from :class:`~arcnn.settings.Settings`.
        ``options`` go to the constructor as they are."""
        return cls.load(model, settings.device, settings.tile, settings.batch_size, settings.chroma,
                        settings.precision, tier=settings.tier, default_model=settings.default_model,
                        auto_max_quality=settings.auto_max_quality, input_quality=settings.input_quality,
                        **options)

    @classmethod
    def load(cls, model: str = "auto", *args, **options) -> "Restorer":
        """Build a restorer (same arguments) and load its fixed model now (``auto`` loads per
        image, on demand)."""
        restorer = cls(model, *args, **options)
        if model not in ("auto", PASSTHROUGH):
            restorer.model(model)
        return restorer

    @property
    def chroma_model(self) -> str:
        """This tier's chroma network."""
        return CHROMA_MODELS[self.tier]

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

    def model(self, name: str) -> nn.Module:
        if name not in self._models:
            net, card = load_named(name)
            fast = prepare(net, self.device, self.precision)
            self._models[name] = CudaGraphed(fast) if self.cuda_graphs else fast
            self.cards[name] = card
        return self._models[name]

    def read(self, img: Image.Image) -> Reading:
        """What ``img``'s file and pixels say of its history (:func:`arcnn.reading.read_input`),
        with this restorer's assumed input quality, if any."""
        return read_input(img, self.input_quality)

    def _bundled_names(self) -> list[str]:
        if self._names is None:  # the bundled models do not change while a process runs
            self._names = list(bundled())
        if not self._names:
            raise NoWeightsError("no trained weights are bundled with this installation; "
                                 "train one with `arcnn train --config training/configs/jpeg-q10.toml`")
        return self._names

    def choose_model(self, img: Image.Image, reading: Reading | None = None) -> str:
        """The model for this image: the fixed one, or for ``auto`` the policy's choice for its
        effective history (JPEG quality, or WebP quantiser)."""
        return self._auto_luma(img, reading)[0] if self.default == "auto" else self.default

    def _auto_luma(self, img: Image.Image, reading: Reading | None = None) -> tuple[str, bool]:
        """``auto``'s luminance model, and whether it is the low-frequency fallback for non-IJG
        tables too mild on some frequency for every model (its change is then masked to the
        frequencies the file's steps hide: :meth:`_mask`)."""
        names = self._bundled_names()
        reading = reading or self.read(img)
        if reading.codec == "webp":
            return webp_model(reading.quality, names), False
        quality = reading.quality if reading.codec == "jpeg" else None
        choice = auto_model(quality, names, self.default_model, self.auto_max_quality,
                            subsampled=reading.subsampled, tier=self.tier)
        if choice == PASSTHROUGH and reading.low_quality is not None:
            choice = auto_model(reading.low_quality, names, self.default_model, self.auto_max_quality,
                                subsampled=reading.subsampled, tier=self.tier)
            return choice, choice != PASSTHROUGH
        return choice, False

    @staticmethod
    def _mask(reading: Reading, luma: str, fallback: bool) -> np.ndarray | None:
        """The luma mask for the low-frequency fallback (:meth:`_auto_luma`), None elsewhere: a
        model the all-64 rule chose fits everywhere."""
        quality = model_quality(luma) if fallback and reading.table is not None else None
        return None if quality is None else frequency_mask(reading.table, quality)

    def _parts(self, reading: Reading, luma: str, fallback: bool) -> tuple[tuple[str, np.ndarray], ...]:
        """The coarser models a non-IJG file's frequencies call for beside the model the all-64
        rule chose (not beside the masked fallback: its file is finer than it somewhere)."""
        quality = model_quality(luma) if not fallback and reading.table is not None else None
        if quality is None:
            return ()
        return coarser_parts(reading.table, quality, quality_models(self._bundled_names(), self.tier))

    def choose_chroma(self, img: Image.Image, reading: Reading | None = None) -> tuple[int, bool] | None:
        """The chroma network's conditions (quality, subsampled) for this image, or None.
        :meth:`_chroma_choice` says more."""
        return self._chroma_choice(img, reading)[0]

    def _chroma_choice(self, img: Image.Image,
                       reading: Reading | None = None) -> tuple[tuple[int, bool] | None, np.ndarray | None]:
        """The chroma network's conditions (quality, subsampled) for this image, or None, and
        the mask of its change (:attr:`Choice.chroma_mask`; None: its whole change).

        Never for grey images, nor for colour files whose chroma is neutral (a grey photo stays
        grey). ``auto``: colour images with a JPEG history whose quality the policy covers, where
        it measured a gain, and lossy WebPs where :data:`WEBP_CHROMA` names a condition (only with
        ``--model auto``: a named model keeps chroma as it is unless ``restore``). ``restore``:
        every colour image; a WebP at :data:`WEBP_CHROMA`'s condition (else the mildest), any
        other input without a JPEG history is treated as quality 50, 4:2:0.

        A subsampled non-IJG file whose own chroma equivalent is too mild for the policy to run
        the chroma network gets it at the mildest condition the policy runs it at, masked: its
        upsampling is kept, and of its change to the file's chroma samples only the frequencies
        where the file's step is :data:`~arcnn.frequency_mask.CHROMA_KEEP_SHARE` times the
        condition's. On BSDS500 val (40 images; flat tables of 10s and 12s and a ramp of 8,
        4:2:0) the network's whole change at q90 gained +0.34 to +0.52 dB RGB but made one image
        0.08 to 0.28 dB worse; its change at the samples is what did it. Masked so, the gain is
        +0.40 to +0.45 with every image better, and every table from q94 to q96 keeps every image
        within 0.03 dB (``python -m training.studies.chroma_fallback``, docs/model-choice.md).
        The fast tier uses the standard network for it, as for WebP: its own made an image 0.07 to
        0.12 dB worse at every q95-q96 table, even its upsampling alone; the standard one, after
        the fast tier's luma, keeps every image within 0.03 dB. Milder chroma than
        :data:`UPSAMPLING_MAX_QUALITY`'s, and a 4:4:4 file's (nothing is finer than a sample
        there), pass through.
        """
        if self.chroma == "passthrough" or img.mode in GREY_MODES:
            return None, None
        reading = reading or self.read(img)
        if reading.grey:
            return None, None
        if reading.codec == "webp":
            condition = webp_chroma(reading.quality)
            if self.chroma == "restore":
                return (condition or WEBP_CHROMA_RESTORE, True), None
            return ((condition, True) if condition is not None and is_bundled(CHROMA_MODEL) else None), None
        quality = reading.quality if reading.codec == "jpeg" else None
        if self.chroma == "restore":
            return (quality or 50, reading.subsampled), None
        if quality is None or quality > self.auto_max_quality or not is_bundled(self.chroma_model):
            return None, None
        policy = shipped_policy(self.tier)
        if policy is None:
            return None, None
        if not policy.use_chroma(quality, reading.subsampled) and reading.chroma_quality is not None:
            quality = min(reading.chroma_quality, TABLES_CHROMA_MAX)  # a non-IJG file's own chroma steps
            if not policy.use_chroma(quality, reading.subsampled):
                return self._masked_chroma(reading, quality)
        return ((quality, reading.subsampled) if policy.use_chroma(quality, reading.subsampled) else None), None

    @staticmethod
    def _masked_chroma(reading: Reading, quality: int) -> tuple[tuple[int, bool] | None, np.ndarray | None]:
        """:meth:`_chroma_choice` for a non-IJG file whose chroma equivalent ``quality`` is too mild
        for the policy: the standard network (in either tier) at the mildest condition its policy
        runs it at, with the chroma frequencies whose samples keep its change (none where the file's
        chroma blocks are not known to start at the image's corner: a grid read elsewhere in the
        pixels places them only modulo 8 luma pixels, 16 are needed); or (None, None) where the
        file was not subsampled by a factor read from it, its chroma is milder than
        :data:`UPSAMPLING_MAX_QUALITY`, or the standard network is not bundled."""
        if (reading.chroma_scale in (None, (1, 1)) or reading.chroma_quality > UPSAMPLING_MAX_QUALITY
                or not is_bundled(CHROMA_MODEL)):
            return None, None
        standard = shipped_policy("standard")
        mildest = standard.mildest_chroma(quality, reading.subsampled) if standard else None
        if mildest is None:
            return None, None
        keep = chroma_keep(reading.chroma_table, mildest) if reading.grid == (0, 0) else np.zeros((8, 8), dtype=bool)
        return (mildest, reading.subsampled), keep

    def choose(self, img: Image.Image, model: str | None = None) -> Choice:
        """Everything done to ``img``: ``model`` (or the restorer's own choice) for luminance,
        and the chroma network's conditions."""
        spec = model or self.default
        if spec == PASSTHROUGH:  # asked for by name: the image goes out as it came in
            return Choice(PASSTHROUGH, why="asked for")
        if spec == "auto":
            reading = self.read(img)
            luma, fallback = self._auto_luma(img, reading)
            chroma, chroma_mask = self._chroma_choice(img, reading)
            parts = self._parts(reading, luma, fallback)
            return Choice(luma, chroma, self._chroma_model_for(reading, chroma_mask),
                          self._why_auto(reading, luma, chroma, parts, chroma_mask),
                          reading, self._mask(reading, luma, fallback), parts, chroma_mask)
        # a model named by the user: chroma passes through unless asked for (--chroma restore);
        # the policy measured its own luma choices with the chroma network, not arbitrary models.
        # Only then is the history read: it conditions the chroma network and nothing else.
        if self.chroma != "restore":
            return Choice(spec, None, self.chroma_model, "named")
        reading = self.read(img)
        return Choice(spec, self.choose_chroma(img, reading), self._chroma_model_for(reading), "named", reading)

    def _chroma_model_for(self, reading: Reading, chroma_mask: np.ndarray | None = None) -> str:
        """This tier's chroma network; for a WebP, and for too-mild chroma restored masked, the
        standard one in either tier (the measured WebP tables and masks are the standard
        network's)."""
        return CHROMA_MODEL if reading.codec == "webp" or chroma_mask is not None else self.chroma_model

    def _why_auto(self, reading: Reading, luma: str, chroma: tuple[int, bool] | None,
                  parts: tuple[tuple[str, np.ndarray], ...] = (), chroma_mask: np.ndarray | None = None) -> str:
        if parts or chroma_mask is not None:
            shares = ", ".join(f"{name} on {int(keep.sum())}" for name, keep in parts)
            by_frequency = f"; by frequency: {shares} of 64" if parts else ""
            chroma_text = (f"; chroma network at q{chroma[0]}: its upsampling and {int(chroma_mask.sum())} of 64"
                           if chroma_mask is not None else "")
            return f"{reading.text}{by_frequency}{chroma_text}"
        if reading.codec == "none":
            return reading.text + ("" if luma == PASSTHROUGH else ": the default model")
        if reading.codec == "jpeg" and reading.quality > self.auto_max_quality:
            return f"{reading.text}: above the quality cut {self.auto_max_quality}"
        if luma == PASSTHROUGH and chroma is None:
            return f"{reading.text}: no model measured to help there"
        return reading.text

    def _plane(self, net: nn.Module, plane: np.ndarray) -> np.ndarray:
        return restore_plane(net, plane, self.tile, self.batch_size, self.device)

    def restore_luma(self, name: str, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """A colour image's full-range (JFIF) float32 Y restored by the luminance model ``name``,
        into ``out`` (which may be ``y`` itself: restored in place) or a new plane.

        The luma models learned on studio-range Y (16-235), so Y is mapped into that range and
        back; on BSDS500 val that gains more than feeding full-range Y (docs/colour.md).
        """
        studio = full_to_studio_luma(y, out=out)
        restore_in_place(self.model(name), [studio], [studio], self.tile, self.batch_size, self.device)
        return studio_to_full_luma(studio, out=studio)

    def restore_luma_choice(self, choice: Choice, y: np.ndarray) -> None:
        """A colour image's full-range Y restored in place as ``choice`` says: its luma model
        (:meth:`restore_luma`), the change masked (:attr:`Choice.mask`), and each coarser model's
        output at its own frequencies (:attr:`Choice.parts`)."""
        before = None if choice.mask is None and not choice.parts else y.copy()
        self.restore_luma(choice.luma, y, out=y)
        if choice.mask is not None:
            apply_mask(before, y, choice.mask, choice.reading.grid)
        for name, keep in choice.parts:
            other = self.restore_luma(name, before)
            apply_mask(y, other, keep, choice.reading.grid)
            y[...] = other
            del other

    def restore_chroma(self, ycc: np.ndarray, conditions: tuple[int, bool], model: str | None = None,
                       out: np.ndarray | None = None) -> np.ndarray:
        """Restored Cb/Cr (2 x H x W float32) of a YCbCr image given as 3 x H x W planes
        (:func:`~arcnn.colour.rgb_to_ycbcr_planes`), by ``model`` (default: this tier's chroma
        network), written into ``out`` (which may be ``ycc[1:]``: restored in place) or new planes."""
        stack = [*ycc, *condition_planes(*conditions, ycc.shape[1:])]
        net = self.model(model or self.chroma_model)
        if out is None:
            return restore_planes(net, [stack], self.tile, self.batch_size, self.device)[0]
        restore_in_place(net, stack, list(out), self.tile, self.batch_size, self.device)
        return out

    def restore(self, img: Image.Image, model: str | Choice | None = None) -> Image.Image:
        """Restore one image; output has the input's mode family and keeps EXIF/ICC info.

        ``model`` is a luminance model name (chroma then follows this restorer's ``chroma``
        mode) or a :class:`Choice` from :meth:`choose`; None lets the restorer choose.
        """
        choice = model if isinstance(model, Choice) else self.choose(img, model)
        name = choice.luma
        net = None if name == PASSTHROUGH else self.model(name)
        mode = img.mode
        if net is None and choice.chroma is None:
            out = img.copy()
        elif mode in ("I;16", "I;16B", "I;16L", "I"):
            plane = np.asarray(img, dtype=np.float64)
            scale = 257.0 if mode.startswith("I;16") or plane.max() > 255 else 1.0
            restored = self._plane(net, plane / scale) * scale
            out = Image.fromarray(np.clip(np.floor(restored + 0.5), 0, 65535).astype(np.uint16))
        elif mode in ("1", "L", "LA") and (choice.mask is not None or choice.parts):
            out = self._restore_grey_masked(img, choice, net)
        elif mode in ("1", "L", "LA"):
            # a writable uint8 copy, restored over itself band by band and rounded as it goes:
            # no float image exists (Pillow holds LA in 4 bytes a pixel: only alpha pays for it)
            planes = np.array(img if mode == "L" else img.convert("LA" if mode == "LA" else "L"))
            y = planes[..., 0] if mode == "LA" else planes
            restore_in_place(net, [y], [y], self.tile, self.batch_size, self.device,
                             convert=lambda band: to_uint8(band, scratch=True))
            out = Image.fromarray(planes, "LA" if mode == "LA" else "L")
        else:
            out = self._restore_colour(img, choice, net)
        out.info = {k: v for k, v in img.info.items() if k in ("exif", "icc_profile", "dpi")}
        return out

    def _restore_grey_masked(self, img: Image.Image, choice: Choice, net: nn.Module) -> Image.Image:
        """A grey JPEG of non-IJG tables: through a float plane, so that the model's change can be
        masked to the frequencies its steps allow (:attr:`Choice.mask`) and coarser models'
        taken where theirs fit better (:attr:`Choice.parts`). Rare, so the plain grey path's
        in-place rounding is not worth repeating here."""
        planes = np.array(img.convert("LA" if img.mode == "LA" else "L"))
        y = planes[..., 0] if img.mode == "LA" else planes
        before = y.astype(np.float32)
        after = self._plane(net, before).astype(np.float32)
        if choice.mask is not None:
            apply_mask(before, after, choice.mask, choice.reading.grid)
        for name, keep in choice.parts:
            other = self._plane(self.model(name), before).astype(np.float32)
            apply_mask(after, other, keep, choice.reading.grid)
            after = other
        y[...] = to_uint8(after)
        return Image.fromarray(planes, "LA" if img.mode == "LA" else "L")

    def _restore_colour(self, img: Image.Image, choice: Choice, net: nn.Module | None) -> Image.Image:
        """A colour image through float32 YCbCr planes, each network's output written over the
        planes it restores (:func:`~arcnn.tiling.restore_in_place`), chroma first since it is
        guided by the decoded luma: no image-sized array exists beside the planes. The luma
        model works on studio-range Y, as :meth:`restore_luma` explains."""
        mode = img.mode
        has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info)
        target = "RGBA" if has_alpha else "RGB"
        rgba = np.asarray(img if mode == target else img.convert(target))
        ycc = rgb_to_ycbcr_planes(rgba[..., :3])
        alpha = rgba[..., 3].copy() if has_alpha else None
        # Where the decoder wrote no colour (R == G == B), the output has none either, exactly:
        # neutral chroma is set to 128 so that R == G == B again after the conversion (a grey
        # photo in a colour file is the case where that is every pixel). Below NEUTRAL_MIN_QUALITY
        # the chroma network may colour them: there, neutral does not mean colourless. A WebP
        # decoder writes neutral chroma as R, G, B up to WEBP_NEUTRAL_TOLERANCE apart; the output
        # makes them exactly equal.
        keep = choice.chroma is None or choice.chroma[0] >= NEUTRAL_MIN_QUALITY
        webp = choice.reading is not None and choice.reading.codec == "webp"
        neutral = neutral_pixels(rgba, WEBP_NEUTRAL_TOLERANCE if webp else 0) if keep else None
        del rgba
        if choice.chroma is not None:
            decoded = None if choice.chroma_mask is None else ycc[1:].copy()
            self.restore_chroma(ycc, choice.chroma, choice.chroma_model, out=ycc[1:])
            if decoded is not None:
                mask_chroma_change(decoded, ycc[1:], choice.chroma_mask, choice.reading.chroma_scale,
                                   choice.reading.grid)
            del decoded
        if neutral is not None:
            ycc[1][neutral] = ycc[2][neutral] = 128.0
        if net is not None:
            self.restore_luma_choice(choice, ycc[0])
        rgb = ycbcr_planes_to_rgb_uint8(ycc, alpha)
        del ycc  # before Pillow's copy of the result
        return Image.fromarray(rgb, target)
