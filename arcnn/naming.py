"""Which files a folder or bucket job takes, and what each output is called.

One rule for ``arcnn restore DIR``, ``arcnn run DIR`` and queued jobs, so that the same input
tree gives the same outputs whichever command restored it:

- **Selection**: a file (key) is an input when its name ends in one of :data:`IMAGE_SUFFIXES`,
  in any case. Folders are walked recursively.
- **Names**: an output mirrors its input's path relative to the folder (or prefix) given, with
  the job's suffix (``--suffix``, none by default) and the output format's extension instead of
  the input's: ``sub/photo.JPG`` -> ``sub/photo.png`` (``sub/photo_restored.png`` with
  ``--suffix _restored``). With ``--format keep`` each input keeps its own extension.
- **Names that collide**: when two or more inputs of one job would get the same name
  (``a.jpg``, ``a.jpeg``, ``a.JPG``, ``a.png``), every one of them keeps its own extension in
  front of the new one (``a.jpg.png``, ``a.jpeg.png``, ``a.JPG.png``, ``a.png.png``). The name
  depends only on the set of inputs, never on timing, so a re-run finds every output where it
  left it and restores nothing, and no input overwrites another's output. A name that still
  clashes (an input literally called ``a.jpg.png`` beside ``a.jpg`` and ``a.png``) is not
  written: that input fails with :class:`NameClashError` naming the input that kept the name.

Inputs arrive in byte-wise key order (S3's listing order), and every input sharing a stem
``S`` lies in the run of keys that start with ``S.``, so a group's names are settled as soon as
the listing leaves that run: :func:`output_names` holds only the keys of the run it is in, not
the whole listing.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from arcnn.errors import ArcnnError

T = TypeVar("T")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif",
                  ".tiff", ".pgm", ".ppm")
"""Names taken as images (case-insensitive) when a folder, prefix or bucket is given."""


FORMAT_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
"""Output format -> the extension of its outputs."""

KEEP = "keep"
"""The output format that writes each input in its own format (:func:`output_format`)."""

KEEP_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".jfif": "jpeg", ".png": "png",
                ".webp": "webp"}
"""Input extensions (any case) that ``keep`` writes in their own format, under their own name;
other inputs (GIF, TIFF, BMP, ...) are written as PNG."""


def output_format(fmt: str, relative: str) -> str:
    """The format an input's output is written in: ``fmt``, or for ``keep`` the input's own."""
    if fmt != KEEP:
        return fmt
    return KEEP_FORMATS.get(posixpath.splitext(relative)[1].lower(), "png")


def output_extension(fmt: str, relative: str) -> str:
    """The output's extension: the format's, or for ``keep`` the input's own where it keeps it
    (``a.JPG`` stays ``a.JPG``)."""
    if fmt == KEEP:
        extension = posixpath.splitext(relative)[1]
        if extension.lower() in KEEP_FORMATS:
            return extension
    return FORMAT_EXTENSIONS[output_format(fmt, relative)]


class NameClashError(ArcnnError):
    """Two inputs of one job would write the same output; the later one is refused."""


def is_image_name(name: str) -> bool:
    """Whether a file or key name is taken as an image input."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def stem(relative: str) -> str:
    """The path without its extension (``sub/a.b.jpg`` -> ``sub/a.b``; ``.hidden`` stays)."""
    return posixpath.splitext(relative)[0]


Extension = str | Callable[[str], str]
"""The output extension: one for every input, or a function of the input's relative name
(``--format keep``)."""


def _extension_of(extension: Extension, relative: str) -> str:
    return extension if isinstance(extension, str) else extension(relative)


def plain_name(relative: str, extension: Extension, suffix: str = "") -> str:
    """The output name when no other input would get it: ``sub/a.JPG`` -> ``sub/a.png``."""
    return stem(relative) + suffix + _extension_of(extension, relative)


@dataclass(frozen=True)
class Named(Generic[T]):
    """One input with its output name (relative, like the input), or the input that took it."""

    item: T
    relative: str
    name: str | None
    clash: str = ""
    """When ``name`` is None: the input whose output has this input's name."""

    def output_name(self) -> str:
        """The name, or :class:`NameClashError` saying which input holds it."""
        if self.name is None:
            raise NameClashError(f"its output name is taken by {self.clash!r} (same name after "
                                 "the extension change); rename one of them")
        return self.name


def output_names(items: Iterable[T], relative: Callable[[T], str],
                 extension: Extension, suffix: str = "") -> Iterator[list[Named[T]]]:
    """Name every input, in groups: the inputs of one group are named together, and no later
    input can change their names, so a caller may cut work (a listing chunk) between groups.

    ``items`` must come in byte-wise order of ``relative(item)`` (S3 listing order; sort first
    otherwise). Each group is returned in that order.
    """
    pending: list[tuple[T, str]] = []
    open_runs: set[str] = set()
    for item in items:
        key = relative(item)
        if pending and not _inside(key, open_runs):
            yield _name_group(pending, extension, suffix)
            pending, open_runs = [], set()
        pending.append((item, key))
        open_runs.add(stem(key) + ".")
    if pending:
        yield _name_group(pending, extension, suffix)


def _inside(key: str, runs: set[str]) -> bool:
    """Whether ``key`` starts with one of ``runs`` (each ends in '.'); O(len(key))."""
    return any(key[:i + 1] in runs for i, char in enumerate(key) if char == ".")


def _name_group(group: list[tuple[T, str]], extension: Extension, suffix: str) -> list[Named[T]]:
    # Inputs that would share a plain name share its stem, so they are all in this group.
    plain = Counter(plain_name(key, extension, suffix) for _, key in group)
    taken: dict[str, str] = {}
    named: list[Named[T]] = []
    for item, key in group:
        name = plain_name(key, extension, suffix)
        if plain[name] > 1:
            name = key + suffix + _extension_of(extension, key)
        if name in taken:
            named.append(Named(item, key, None, taken[name]))
        else:
            taken[name] = key
            named.append(Named(item, key, name))
    return named
