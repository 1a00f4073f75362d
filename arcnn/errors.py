"""Error types that callers are expected to catch and report."""


class ArcnnError(Exception):
    """Base class for errors that carry a message meant for the user."""


class BadImageError(ArcnnError):
    """The input is not a decodable image (corrupt, truncated, empty, too large, unsupported).

    Permanent: retrying will not help, so workers fail the key and move on.
    """


class NoWeightsError(ArcnnError):
    """A model name has no trained weights bundled or at the given path."""


class TooLargeError(BadImageError):
    """The image has more pixels than the decompression-bomb limit (``ARCNN_MAX_PIXELS``)."""


class AnimatedImageError(BadImageError):
    """The input has more than one frame (animated GIF/WebP/PNG, multi-page TIFF).

    Refused rather than flattened: restoring frame 0 alone would write a still image that looks
    like a finished output while every other frame is lost.
    """
