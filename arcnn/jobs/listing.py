"""What a job covers: validating SRC/DEST and streaming the selected source keys with their
output names.

Used by the Celery listing task and by ``arcnn run`` alike, so both select exactly the same keys
and name their outputs the same way (:mod:`arcnn.naming`, also used by ``arcnn restore DIR``).
"""

from __future__ import annotations

from collections.abc import Iterator

from arcnn.images import EXTENSIONS
from arcnn.naming import Named, output_names
from worker.jobs import JobSpec
from worker.locations import Location, LocationError, check_disjoint, is_selected, parse_location
from worker.storage import ObjectInfo, Storage, StorageError


def validate(spec: JobSpec) -> tuple[Location, Location]:
    """Parse and check a job's locations and options before anything is queued or written."""
    if spec.fmt not in EXTENSIONS:
        raise LocationError(f"unknown output format {spec.fmt!r} (choose from {', '.join(EXTENSIONS)})")
    src, dest = parse_location(spec.src), parse_location(spec.dest)
    if not spec.allow_overlap:
        check_disjoint(src, dest)
    return src, dest


def check_destination(dest: Storage) -> None:
    """Fail a job whose destination can never be written (a missing bucket) with one error,
    before any key is queued, instead of with one ``storage`` failure per key."""
    try:
        dest.check()
    except StorageError as error:
        raise LocationError(f"destination {dest.location}: {error}") from error


def selected(source: Storage, dest: Location, spec: JobSpec, start_after: str = "") -> Iterator[ObjectInfo]:
    """The source objects the job restores, in key order, streamed page by page.

    When overlap was allowed and DEST lies inside SRC, keys under DEST are left out so that a
    job never restores its own outputs.
    """
    inside = source.location.contains(dest) and dest != source.location
    for obj in source.list(start_after):
        relative = source.location.relative(obj.key)
        if inside and _under(source.location, dest, obj.key):
            continue
        if is_selected(relative, spec.include):
            yield obj


def planned(source: Storage, dest: Location, spec: JobSpec,
            start_after: str = "") -> Iterator[list[Named[ObjectInfo]]]:
    """:func:`selected`, with each key's output name, in groups that later keys cannot rename.

    A listing resumed after the last key of a group (``start_after``) names the rest exactly as
    one uninterrupted listing would, which is what lets the Celery lister work in chunks.
    """
    return output_names(selected(source, dest, spec, start_after),
                        lambda obj: source.location.relative(obj.key), EXTENSIONS[spec.fmt])


def _under(src: Location, dest: Location, key: str) -> bool:
    if src.scheme == "s3":
        return key.startswith(dest.prefix)
    return (src.bucket.rstrip("/") + "/" + key).startswith(dest.bucket.rstrip("/") + "/")
