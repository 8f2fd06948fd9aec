"""An image file's format and claimed size, read from its header by magic bytes, without decoding it.

OpenCV allocates whatever a header claims before it reads a pixel: a 50 kB PNG can claim 20000 x 20000
and take 1.2 GB once decoded. Reading the header first lets images.py refuse such a file for free.
Formats are told by their first bytes, never by the suffix (a .jpg may hold a PNG).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

MAX_JPEG_SEGMENTS = 4096  # before the frame header; real files have < 300 (EXIF, XMP, ICC chunks)
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # DHT, JPG and DAC share the range
JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn carry no length
TIFF_WIDTH, TIFF_HEIGHT = 256, 257
TIFF_SHORT, TIFF_LONG = 3, 4


class HeaderError(ValueError):
    """A header that is truncated or does not say what a decoder needs."""


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header claims: its format name and size in pixels."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _read(f: BinaryIO, size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise HeaderError("truncated header")
    return data


def _png(f: BinaryIO) -> tuple[int, int]:
    f.seek(8)
    length, kind, width, height = struct.unpack(">I4sII", _read(f, 16))
    if kind != b"IHDR" or length != 13:
        raise HeaderError("PNG without an IHDR chunk first")
    return width, height


def _jpeg(f: BinaryIO) -> tuple[int, int]:
    """The size in the first frame header (SOFn); libjpeg refuses a second one."""
    f.seek(2)
    for _ in range(MAX_JPEG_SEGMENTS):
        if _read(f, 1) != b"\xff":
            raise HeaderError("JPEG segments out of sync")
        marker = _read(f, 1)[0]
        while marker == 0xFF:  # fill bytes
            marker = _read(f, 1)[0]
        if marker in JPEG_STANDALONE_MARKERS:
            continue
        if marker in (0xD9, 0xDA):
            raise HeaderError("JPEG without a frame header before its data")
        (length,) = struct.unpack(">H", _read(f, 2))
        if length < 2:
            raise HeaderError("JPEG segment of impossible length")
        if marker in JPEG_SOF_MARKERS:
            _precision, height, width = struct.unpack(">BHH", _read(f, 5))
            return width, height
        f.seek(length - 2, 1)
    raise HeaderError(f"JPEG without a frame header in its first {MAX_JPEG_SEGMENTS} segments")


def _bmp(f: BinaryIO) -> tuple[int, int]:
    f.seek(14)
    (dib_size,) = struct.unpack("<I", _read(f, 4))
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", _read(f, 4))
    width, height = struct.unpack("<ii", _read(f, 8))
    if width < 0:
        raise HeaderError("BMP of negative width")
    return width, abs(height)  # a negative height is a top-down bitmap


def _webp(f: BinaryIO) -> tuple[int, int]:
    f.seek(12)
    kind = _read(f, 8)[:4]
    data = _read(f, 10)
    if kind == b"VP8X":  # the canvas; libwebp refuses a frame larger than it
        return 1 + int.from_bytes(data[4:7], "little"), 1 + int.from_bytes(data[7:10], "little")
    if kind == b"VP8L" and data[0] == 0x2F:
        bits = int.from_bytes(data[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8 " and data[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[6:10])
        return width & 0x3FFF, height & 0x3FFF
    raise HeaderError("WebP without a VP8, VP8L or VP8X header first")


def _tiff(f: BinaryIO) -> tuple[int, int]:
    """The size of the first page (the one cv2.imdecode reads); a repeated tag counts at its largest."""
    f.seek(0)
    order = "<" if _read(f, 2) == b"II" else ">"
    f.seek(4)
    (offset,) = struct.unpack(order + "I", _read(f, 4))
    f.seek(offset)
    (count,) = struct.unpack(order + "H", _read(f, 2))
    sizes = {TIFF_WIDTH: 0, TIFF_HEIGHT: 0}
    entries = _read(f, 12 * count)
    for at in range(0, len(entries), 12):
        tag, kind, _count, value = struct.unpack(order + "HHI4s", entries[at:at + 12])
        if tag in sizes and kind in (TIFF_SHORT, TIFF_LONG):
            fmt = order + ("H" if kind == TIFF_SHORT else "I")
            sizes[tag] = max(sizes[tag], struct.unpack_from(fmt, value)[0])
    return sizes[TIFF_WIDTH], sizes[TIFF_HEIGHT]


# (first bytes, format, parser): the formats of images.IMAGE_SUFFIXES, and only those
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG", _png),
    (b"\xff\xd8", "JPEG", _jpeg),
    (b"BM", "BMP", _bmp),
    (b"II*\x00", "TIFF", _tiff),
    (b"MM\x00*", "TIFF", _tiff),
)


def _signature(head: bytes):
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP", _webp
    return next(((name, parse) for magic, name, parse in SIGNATURES if head.startswith(magic)), (None, None))


def read_header(f: BinaryIO) -> ImageHeader:
    """The format and claimed size of the image in the open binary file `f` (from its start).

    HeaderError if its first bytes are not PNG, JPEG, BMP, WebP or classic TIFF, or its header is cut short.
    """
    f.seek(0)
    head = f.read(12)
    if not head:
        raise HeaderError("an empty file")
    name, parse = _signature(head)
    if parse is None:
        raise HeaderError("not a JPEG, PNG, BMP, WebP or TIFF image (by its first bytes)")
    try:
        width, height = parse(f)
    except struct.error as exc:  # a slice of the header shorter than its fields
        raise HeaderError("truncated header") from exc
    return ImageHeader(name, width, height)
