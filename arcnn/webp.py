"""Reading a lossy WebP's quantiser from its VP8 frame header, without decoding any pixel.

A lossy WebP is a VP8 key frame. Its first partition opens with the frame header, coded with
VP8's boolean entropy coder (RFC 6386, sections 7, 9.3 and 9.6): colour space, segmentation
(libwebp's encoder splits the frame into up to four segments, each with its own quantiser, by
how much masking the content gives), loop filter, partitions, then the quantiser indices
(0-127, larger is coarser). The mean quantiser index over the segments is how strongly the
image was compressed; that is what the WebP models are chosen by.
"""

from __future__ import annotations

import struct

import numpy as np

QUANTISER_BY_QUALITY = ((5, 87.6), (10, 77.6), (20, 64.2), (30, 54.9), (40, 47.2), (50, 40.9),
                        (60, 35.1), (70, 30.1), (80, 20.9), (90, 9.2), (95, 4.5), (100, 0.0))
"""(Pillow/libwebp quality, median :func:`quantiser` over BSDS500 val): how the encoder's quality
setting maps to the quantiser it writes (content moves it by about +-5)."""


class _BoolDecoder:
    """RFC 6386's boolean decoder, enough to read the header's literals (probability 1/2)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 2
        self.value = int.from_bytes(data[:2].ljust(2, b"\0"), "big")
        self.range, self.bits = 255, 0

    def bit(self, prob: int = 128) -> int:
        split = 1 + (((self.range - 1) * prob) >> 8)
        big_split = split << 8
        if self.value >= big_split:
            result, self.range, self.value = 1, self.range - split, self.value - big_split
        else:
            result, self.range = 0, split
        while self.range < 128:
            self.value, self.range = self.value << 1, self.range << 1
            self.bits += 1
            if self.bits == 8:
                self.bits = 0
                if self.pos < len(self.data):
                    self.value |= self.data[self.pos]
                self.pos += 1
        return result

    def literal(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def signed(self, n: int) -> int:
        value = self.literal(n)
        return -value if self.bit() else value

    def optional_signed(self, n: int) -> int | None:
        return self.signed(n) if self.bit() else None


def vp8_chunk(data: bytes) -> bytes | None:
    """The payload of the 'VP8 ' (lossy) chunk of a RIFF WebP file, or None (lossless, not WebP)."""
    if len(data) < 20 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if tag == b"VP8 ":
            return data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
    return None


def quantiser(data: bytes) -> float | None:
    """Mean luma AC quantiser index (0-127) over the segments of a lossy WebP file, or None when
    the file is not a lossy WebP or its header cannot be read."""
    frame = vp8_chunk(data)
    if frame is None or len(frame) < 11 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None  # not a key frame: a still WebP always is one
    bits = _BoolDecoder(frame[10:])
    bits.literal(2)  # colour space, clamping
    segment_quants: list[int | None] = [None] * 4
    absolute = False
    if bits.bit():  # segmentation enabled
        update_map, update_data = bits.bit(), bits.bit()
        if update_data:
            absolute = bool(bits.bit())
            segment_quants = [bits.optional_signed(7) for _ in range(4)]
            for _ in range(4):
                bits.optional_signed(6)  # loop filter level per segment
        if update_map:
            for _ in range(3):
                if bits.bit():
                    bits.literal(8)
    bits.literal(1 + 6 + 3)  # filter type, level, sharpness
    if bits.bit() and bits.bit():  # loop filter deltas enabled and updated
        for _ in range(8):
            bits.optional_signed(6)
    bits.literal(2)  # log2 of the number of DCT partitions
    base = bits.literal(7)
    if segment_quants == [None] * 4:
        return float(base)
    values = [(q or 0) if absolute else base + (q or 0) for q in segment_quants]
    return sum(min(127, max(0, v)) for v in values) / len(values)


def equivalent_quality(quantiser_index: float) -> int:
    """The libwebp quality whose median quantiser is ``quantiser_index`` (interpolated)."""
    qualities, quantisers = zip(*QUANTISER_BY_QUALITY)
    return int(round(float(np.interp(-quantiser_index, [-q for q in quantisers], qualities))))
