"""Which files a folder or bucket job takes, and what each output is called.

One rule for ``arcnn restore DIR``, ``arcnn run DIR`` and queued jobs, so that the same input
tree gives the same outputs whichever command restored it:

- **Selection**: a file (key) is an input when its name ends in one of :data:`IMAGE_SUFFIXES`,
  in any case. Folders are walked recursively.
- **Names**: an output mirrors its input's path relative to the folder (or prefix) given, with
  the output format's extension instead of the input's: ``sub/photo.JPG`` -> ``sub/photo.png``.
- **Stems that collide**: when two or more inputs of one job share a path without extension
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
from pathlib import Path
from typing import Generic, TypeVar

from arcnn.errors import ArcnnError

T = TypeVar("T")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif",
                  ".tiff", ".pgm", ".ppm")
"""Names taken as images (case-insensitive) when a folder, prefix or bucket is given."""


class NameClashError(ArcnnError):
    """Two inputs of one job would write the same output; the later one is refused."""


def is_image_name(name: str) -> bool:
    """Whether a file or key name is taken as an image input."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def stem(relative: str) -> str:
    """The path without its extension (``sub/a.b.jpg`` -> ``sub/a.b``; ``.hidden`` stays)."""
    return posixpath.splitext(relative)[0]


def plain_name(relative: str, extension: str) -> str:
    """The output name when no other input shares the stem: ``sub/a.JPG`` -> ``sub/a.png``."""
    return stem(relative) + extension


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
                 extension: str) -> Iterator[list[Named[T]]]:
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
            yield _name_group(pending, extension)
            pending, open_runs = [], set()
        pending.append((item, key))
        open_runs.add(stem(key) + ".")
    if pending:
        yield _name_group(pending, extension)


def _inside(key: str, runs: set[str]) -> bool:
    """Whether ``key`` starts with one of ``runs`` (each ends in '.'); O(len(key))."""
    return any(key[:i + 1] in runs for i, char in enumerate(key) if char == ".")


def _name_group(group: list[tuple[T, str]], extension: str) -> list[Named[T]]:
    stems = Counter(stem(key) for _, key in group)
    taken: dict[str, str] = {}
    named: list[Named[T]] = []
    for item, key in group:
        name = plain_name(key, extension) if stems[stem(key)] == 1 else key + extension
        if name in taken:
            named.append(Named(item, key, None, taken[name]))
        else:
            taken[name] = key
            named.append(Named(item, key, name))
    return named


def local_inputs(paths: Iterable[Path]) -> list[tuple[str, Path]]:
    """(name relative to what was given, path) of every input, in byte-wise name order: a
    folder's images recursively, relative to the folder; a file given by itself, by its name."""
    inputs: list[tuple[str, Path]] = []
    for path in paths:
        if path.is_dir():
            inputs += [(found.relative_to(path).as_posix(), found) for found in path.rglob("*")
                       if found.is_file() and is_image_name(found.name)]
        else:
            inputs.append((path.name, path))
    return sorted(inputs, key=lambda pair: pair[0])
