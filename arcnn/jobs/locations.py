"""Where images come from and go to: ``s3://bucket/prefix`` or ``file:///path`` (or a plain path).

A location is a *folder*: ``s3://b/photos`` means the keys under ``photos/``, never ``photos-old/``,
which is what people expect from ``aws s3 sync`` and what makes "does DEST overlap SRC" decidable.
Output keys are built only through :func:`output_key`, which refuses anything that could escape
the destination, because source keys are untrusted input (an S3 key may contain ``../``).

``--include`` globs follow the shell's rules (bash with ``globstar``), matched against the key
relative to the location: ``*`` and ``?`` never cross a ``/``, ``**`` crosses any number of
folders (``**/`` also matches none), ``[abc]`` / ``[!abc]`` match one character. So
``nested/*.jpg`` takes ``nested/a.jpg`` but not ``nested/deeper/b.jpg``; ``nested/**/*.jpg``
takes both; ``**/*.jpg`` takes every JPEG at any depth.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlparse

from arcnn.errors import ArcnnError
from arcnn.naming import is_image_name


class LocationError(ArcnnError):
    """A location URL cannot be used (bad scheme, missing bucket, overlapping SRC and DEST)."""


class UnsafeKeyError(ArcnnError):
    """A source key would produce an output outside the destination (``..``, absolute, odd bytes)."""


@dataclass(frozen=True)
class Location:
    """A parsed location: ``scheme`` is ``s3`` or ``file`` (``memory`` for standard input and
    output, :class:`arcnn.jobs.storage.MemoryStorage`); ``prefix`` is ``""`` or ends in ``/``.

    For ``file`` the folder itself is the root (``bucket``) and ``prefix`` is always ``""``.
    """

    scheme: str
    bucket: str
    """S3 bucket; for ``file`` the absolute root folder."""
    prefix: str

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.bucket}"
        return f"{self.scheme}://{self.bucket}/{self.prefix}"

    def relative(self, key: str) -> str:
        """The part of ``key`` below this location's prefix (keys come from listing it)."""
        if not key.startswith(self.prefix):
            raise UnsafeKeyError(f"key {key!r} is not under {self}")
        return key[len(self.prefix):]

    def url_of(self, key: str) -> str:
        """The object's full address, the same for the same object whichever location it is
        named from (``file:///in`` key ``out/a.png`` and ``file:///in/out`` key ``a.png``)."""
        if self.scheme == "file":
            return f"file://{self.bucket.rstrip('/')}/{key}"
        return f"{self.scheme}://{self.bucket}/{key}"

    def key_of(self, url: str) -> str | None:
        """The key of the object at ``url`` (from :meth:`url_of`) under this location, or None."""
        root = self.url_of(self.prefix)
        return url[len(root) - len(self.prefix):] if url.startswith(root) else None

    def contains(self, other: Location) -> bool:
        """True when every key of ``other`` is also under this location."""
        if self.scheme != other.scheme:
            return False
        if self.scheme == "file":
            root = self.bucket.rstrip("/") + "/"
            return other.bucket == self.bucket or other.bucket.startswith(root)
        return self.bucket == other.bucket and other.prefix.startswith(self.prefix)


def parse_location(url: str) -> Location:
    """Parse ``s3://bucket[/prefix]``, ``file:///abs/path`` or a plain (relative) path."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise LocationError(f"{url!r}: missing bucket name")
        return Location("s3", parsed.netloc, _folder(parsed.path.lstrip("/")))
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise LocationError(f"{url!r}: file URLs must be file:///absolute/path")
        path = unquote(parsed.path)
    elif parsed.scheme == "" or len(parsed.scheme) == 1:  # plain path (or a Windows drive letter)
        path = url
    else:
        raise LocationError(f"{url!r}: unsupported scheme {parsed.scheme!r} (use s3:// or file://)")
    root = Path(path).expanduser().resolve()
    return Location("file", str(root).rstrip("/") or "/", "")


def _folder(prefix: str) -> str:
    return prefix if prefix == "" or prefix.endswith("/") else prefix + "/"


def overlaps(src: Location, dest: Location) -> bool:
    """Whether DEST is inside SRC, SRC inside DEST, or both are the same place."""
    return src.contains(dest) or dest.contains(src)


def check_disjoint(src: Location, dest: Location) -> None:
    """Refuse a DEST inside SRC or SRC inside DEST: outputs would be re-read as inputs or clobber them."""
    if overlaps(src, dest):
        raise LocationError(
            f"destination {dest} overlaps source {src}; pass --allow-overlap if that is intended"
        )


def is_selected(relative_key: str, include: str | None) -> bool:
    """Whether a listed key is work: matches ``include`` if given, else has an image suffix
    (:data:`arcnn.naming.IMAGE_SUFFIXES`, the same rule as ``arcnn restore DIR``)."""
    if relative_key == "" or relative_key.endswith("/"):
        return False  # folder markers
    if include is not None:
        return glob_pattern(include).fullmatch(relative_key) is not None
    return is_image_name(relative_key)


@lru_cache(maxsize=32)
def glob_pattern(glob: str) -> re.Pattern[str]:
    """A shell glob as a regular expression (the rules are in this module's docstring).

    Written out because :func:`fnmatch.fnmatch` lets ``*`` cross ``/`` (so ``nested/*.jpg``
    took ``nested/deeper/x.jpg``) and :func:`glob.translate` needs Python 3.13.
    """
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and (end := glob.find("]", i + 2)) != -1:
            body = glob[i + 1:end]
            negate = body[:1] == "!"
            body = re.sub(r"([\\^\[\]])", r"\\\1", body[1:] if negate else body)
            out.append(f"(?!/)[{'^' if negate else ''}{body}]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def output_key(dest: Location, relative_key: str, name: str) -> str:
    """The destination key of a source key relative to SRC, whose output name (relative, from
    :func:`arcnn.naming.output_names`) is ``name``.

    Raises :class:`UnsafeKeyError` for keys that are absolute, contain ``.``/``..``/empty segments,
    backslashes or control characters: harmless-looking on S3, they become path traversal as soon
    as the destination is a local folder, and there is no legitimate image key that needs them.
    The name travels in queue messages, so it is checked like the key and must sit beside it.
    """
    _check_safe(relative_key)
    _check_safe(name)
    if posixpath.dirname(name) != posixpath.dirname(relative_key):
        raise UnsafeKeyError(f"output name {name!r} is not beside its source {relative_key!r}")
    return dest.prefix + name


def _check_safe(relative_key: str) -> None:
    if not relative_key or relative_key.startswith("/") or "\\" in relative_key:
        raise UnsafeKeyError(f"unsafe key {relative_key!r}")
    if any(ord(c) < 32 or c == "\x7f" for c in relative_key):
        raise UnsafeKeyError(f"unsafe key {relative_key!r}: control characters")
    if any(part in ("", ".", "..") for part in relative_key.split("/")):
        raise UnsafeKeyError(f"unsafe key {relative_key!r}: empty, '.' or '..' segment")
