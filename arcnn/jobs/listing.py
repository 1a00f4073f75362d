"""What a job covers: validating SRC/DEST and streaming the selected source keys with their
output names.

Used by the Celery listing task, ``arcnn run`` and ``arcnn restore DIR`` alike, so all select
exactly the same keys and name their outputs the same way (:mod:`arcnn.naming`).
"""

from __future__ import annotations

from collections.abc import Iterator

from arcnn.jobs.locations import Location, LocationError, check_disjoint, is_selected, parse_location
from arcnn.jobs.spec import JobSpec
from arcnn.jobs.storage import META_ETAG, ObjectInfo, Storage, StorageError
from arcnn.naming import Named, output_extension, output_names


def validate(spec: JobSpec) -> tuple[Location, Location]:
    """Parse and check a job's locations before anything is queued or written (the options
    are checked by :class:`JobSpec` itself)."""
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


def selected(source: Storage, dest: Storage, spec: JobSpec, start_after: str = "") -> Iterator[ObjectInfo]:
    """The source objects the job restores, in key order, streamed page by page.

    Outputs are never inputs. Where overlap was allowed and DEST lies inside SRC, every key
    under DEST is left out. Where DEST is SRC, or holds it, a key is left out when DEST has it
    recorded as an output (:data:`~arcnn.jobs.storage.META_ETAG`): one metadata read per key,
    paid only by such jobs. Their listing must not race their own writes: the drivers list it
    in full before the first output is written (:func:`must_list_first`).
    """
    src, out = source.location, dest.location
    inside = src.contains(out) and out != src
    for obj in source.list(start_after):
        relative = src.relative(obj.key)
        if not is_selected(relative, spec.include):
            continue
        dest_key = out.key_of(src.url_of(obj.key))
        if dest_key is not None and (inside or _is_output(dest, dest_key)):
            continue
        yield obj


def must_list_first(src: Location, dest: Location) -> bool:
    """Whether a job's outputs can land among the keys its listing has yet to reach (DEST is
    SRC or holds it), so that it must list SRC in full before it writes."""
    return dest.contains(src)


def _is_output(dest: Storage, key: str) -> bool:
    recorded = dest.metadata(key)
    return recorded is not None and META_ETAG in recorded


def planned(source: Storage, dest: Storage, spec: JobSpec,
            start_after: str = "") -> Iterator[list[Named[ObjectInfo]]]:
    """:func:`selected`, with each key's output name, in groups that later keys cannot rename.

    A listing resumed after the last key of a group (``start_after``) names the rest exactly as
    one uninterrupted listing would, which is what lets the Celery lister work in chunks.
    """
    return output_names(selected(source, dest, spec, start_after), lambda obj: source.location.relative(obj.key),
                        lambda relative: output_extension(spec.fmt, relative), spec.suffix)
