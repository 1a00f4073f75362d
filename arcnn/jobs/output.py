"""How one output is written: its format, its bytes, and the check that it can be read back.

Three rules a user can rely on:

- **A passthrough never degrades.** When no model is applied and the output format is the
  input's, the output *is* the input: its bytes are copied, not re-encoded (a q95 JPEG re-saved
  as JPEG lost 0.3 dB, and 0.2-1.7 dB as WebP). Written in another format, a passthrough is
  lossless where the format allows it (PNG, lossless WebP); only JPEG output of a non-JPEG
  input loses something, and the result says so in its warning.
- **``keep``** writes each output in its input's format, by the input's extension (JPEG, PNG,
  WebP), under that same extension; other inputs (GIF, TIFF, BMP, ...) are written as PNG.
- **An output counts only once it reads back.** Every encoded output is opened and verified
  before it is stored; one that cannot be (for example a PNG whose ICC profile is over the
  1 MiB Pillow reads) fails its key instead of being counted done. ICC profiles over that limit
  are left out of PNG outputs, with a warning, because no PNG Pillow writes with them opens.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from PIL import Image, PngImagePlugin

from arcnn.errors import ArcnnError
from arcnn.images import encode_image, format_losses
from arcnn.restoration import PASSTHROUGH, Choice

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}

PNG_ICC_LIMIT = PngImagePlugin.MAX_TEXT_CHUNK
"""Largest ICC profile a PNG output carries: Pillow refuses to open a PNG with a larger one."""


class BadOutputError(ArcnnError):
    """An encoded output does not read back as the image it should be; it is not stored."""


@dataclass
class Encoded:
    """An output ready to store."""

    data: bytes
    fmt: str
    copied: bool
    """True when ``data`` is the source's own bytes (a passthrough in the input's format)."""
    warnings: list[str] = field(default_factory=list)


def is_passthrough(choice: Choice) -> bool:
    """Whether nothing is applied to the image (no luma model, no chroma network)."""
    return choice.luma == PASSTHROUGH and choice.chroma is None


def encode_output(image: Image.Image, source: Image.Image, source_bytes: bytes, fmt: str, choice: Choice,
                  quality: int, png_level: int) -> Encoded:
    """The bytes of one output in the concrete format ``fmt`` (png, jpeg or webp), validated.

    ``image`` is the restored image (for a passthrough, the decoded source), ``source`` the
    decoded input (its ``source_format`` says what it was), ``source_bytes`` the input as read.
    """
    passthrough = is_passthrough(choice)
    if passthrough and source.info.get("source_format") == PIL_FORMATS[fmt]:
        return Encoded(source_bytes, fmt, copied=True)
    warnings = format_losses(image, fmt)
    icc = image.info.get("icc_profile")
    if fmt == "png" and icc and len(icc) > PNG_ICC_LIMIT:
        image = image.copy()
        image.info = {k: v for k, v in image.info.items() if k != "icc_profile"}
        warnings.append(f"ICC profile of {len(icc) / 2**20:.1f} MiB left out: PNG readers refuse profiles "
                        f"over {PNG_ICC_LIMIT / 2**20:.0f} MiB (--format jpeg, webp or keep keeps it)")
    if passthrough and fmt == "jpeg":
        warnings.append(f"passed through, but re-encoded as JPEG q{quality} from "
                        f"{source.info.get('source_format') or 'its format'} (--format keep or png keeps it exact)")
    data = encode_image(image, fmt, png_level=png_level, quality=quality, lossless=passthrough and fmt == "webp")
    check_readable(data, fmt, image.size)
    return Encoded(data, fmt, copied=False, warnings=warnings)


def check_readable(data: bytes, fmt: str, size: tuple[int, int]) -> None:
    """Raise :class:`BadOutputError` unless ``data`` opens as a ``fmt`` image of ``size``.

    Opening parses every header chunk (where an oversized ICC profile or EXIF block fails) and
    ``verify`` checks the PNG's checksums, without decoding the pixels a second time.
    """
    try:
        with Image.open(io.BytesIO(data)) as written:
            if written.format != PIL_FORMATS[fmt] or written.size != size:
                raise BadOutputError(f"the encoded output reads back as {written.format} {written.size[0]}x"
                                     f"{written.size[1]}, not {PIL_FORMATS[fmt]} {size[0]}x{size[1]}")
            written.verify()
    except BadOutputError:
        raise
    except Exception as error:  # noqa: BLE001 (whatever the decoder says: the output is unusable)
        raise BadOutputError(f"the encoded {fmt.upper()} output cannot be read back ({error}); not written") from error
