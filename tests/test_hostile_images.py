"""Odd and hostile image files, built byte by byte: each decodes correctly, or is skipped with one warning
naming the file and the cause; never a traceback, a hang, or memory in proportion to what a header claims."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from quantlab.errors import ImageError, SkippedImageWarning
from quantlab.images import MAX_IMAGE_PIXELS, iter_images, list_images, read_image

GRADIENT = np.dstack([np.tile(np.arange(0, 200, 10, dtype=np.uint8), (12, 1))] * 3)  # (12, 20, 3), columns differ


# ---- file builders: the bytes of each format, written by hand where OpenCV cannot write the oddity ----

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, color_type: int = 2, bit_depth: int = 8, rows: bytes | None = None,
        before_idat: bytes = b"") -> bytes:
    """A PNG; rows: the filtered scanlines (each starts with filter byte 0), None for a header alone."""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    if rows is None:
        return b"\x89PNG\r\n\x1a\n" + ihdr
    return b"\x89PNG\r\n\x1a\n" + ihdr + before_idat + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def _scanlines(pixels: np.ndarray) -> bytes:
    """Filter-0 scanlines of (H, W, C) big-endian samples."""
    rows = pixels.reshape(pixels.shape[0], -1)
    return b"".join(b"\x00" + row.tobytes() for row in rows)


def jpeg(image: np.ndarray = GRADIENT, **params) -> bytes:
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if params.get("progressive") else []
    return cv2.imencode(".jpg", image, flags)[1].tobytes()


def with_jpeg_size(data: bytes, width: int, height: int, keep: int | None = None) -> bytes:
    """The JPEG with its frame header (SOF0/SOF2) claiming width x height, cut to `keep` bytes."""
    edited = bytearray(data)
    at = next(i for i in range(len(edited) - 1) if edited[i] == 0xFF and edited[i + 1] in (0xC0, 0xC2))
    struct.pack_into(">HH", edited, at + 5, height, width)
    return bytes(edited[:keep])


def with_jpeg_segments(data: bytes, segments: list[bytes]) -> bytes:
    """The JPEG with raw segments inserted right after its SOI marker."""
    return data[:2] + b"".join(segments) + data[2:]


def app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def exif_orientation(value: int) -> bytes:
    """An EXIF APP1 segment holding one tag: Orientation."""
    tiff = b"II*\x00" + struct.pack("<IHHHIHHI", 8, 1, 0x0112, 3, 1, value, 0, 0)
    return app1(b"Exif\x00\x00" + tiff)


def bmp(width: int, height: int, pixels: np.ndarray | None = None, top_down: bool = False) -> bytes:
    """A 24-bit BMP; pixels None: the headers alone."""
    stride = (width * 3 + 3) // 4 * 4
    body = b""
    if pixels is not None:
        rows = pixels if top_down else pixels[::-1]
        body = b"".join(row.tobytes().ljust(stride, b"\x00") for row in rows)
    dib = struct.pack("<IiiHHIIiiII", 40, width, -height if top_down else height, 1, 24, 0, len(body), 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(body), 0, 0, 54) + dib + body


def webp(image: np.ndarray = GRADIENT, lossless: bool = False) -> bytes:
    return cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101 if lossless else 90])[1].tobytes()


def _riff(*chunks: bytes) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _webp_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


def _vp8l_of(data: bytes) -> bytes:
    """The VP8L chunk's payload in a lossless WebP that OpenCV wrote (RIFF, WEBP, VP8L at byte 12)."""
    assert data[12:16] == b"VP8L"
    return data[20:20 + struct.unpack("<I", data[16:20])[0]]


def webp_vp8x(canvas_w: int, canvas_h: int, vp8l: bytes, animated: bool = False) -> bytes:
    """An extended WebP: a VP8X canvas, then the VP8L frame (inside ANIM/ANMF when animated)."""
    vp8x = _webp_chunk(b"VP8X", bytes([0x02 if animated else 0, 0, 0, 0])
                       + (canvas_w - 1).to_bytes(3, "little") + (canvas_h - 1).to_bytes(3, "little"))
    frame = _webp_chunk(b"VP8L", vp8l)
    if not animated:
        return _riff(vp8x, frame)
    bits = int.from_bytes(vp8l[1:5], "little")
    fw, fh = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    anmf = (b"\x00" * 6 + (fw - 1).to_bytes(3, "little") + (fh - 1).to_bytes(3, "little")
            + (100).to_bytes(3, "little") + b"\x00" + frame)
    return _riff(vp8x, _webp_chunk(b"ANIM", b"\x00" * 4 + b"\x00\x00"), _webp_chunk(b"ANMF", anmf),
                 _webp_chunk(b"ANMF", anmf))


def with_vp8l_size(vp8l: bytes, width: int, height: int) -> bytes:
    bits = int.from_bytes(vp8l[1:5], "little") & ~((1 << 28) - 1) | (width - 1) | ((height - 1) << 14)
    return vp8l[:1] + bits.to_bytes(4, "little") + vp8l[5:]


def tiff(pages: list[tuple[int, int, np.ndarray | None]], order: str = "<", duplicate_width: int | None = None
         ) -> bytes:
    """A classic TIFF: one IFD a page, uncompressed 8-bit RGB in one strip (no strip data when pixels is None)."""
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    out = bytearray(magic + struct.pack(order + "I", 8))
    for index, (width, height, pixels) in enumerate(pages):
        strip = pixels.tobytes() if pixels is not None else b""
        entries = [(256, 4, width), (257, 4, height), (259, 3, 1), (262, 3, 2), (273, 4, 0), (277, 3, 3),
                   (278, 4, height), (279, 4, len(strip))]
        if duplicate_width is not None:
            entries.insert(1, (256, 4, duplicate_width))
        ifd_at = len(out)
        bits_at = ifd_at + 2 + 12 * (len(entries) + 1) + 4
        strip_at = bits_at + 6
        out += struct.pack(order + "H", len(entries) + 1)
        out += struct.pack(order + "HHII", 258, 3, 3, bits_at)
        for tag, kind, value in entries:
            value = strip_at if tag == 273 else value
            out += struct.pack(order + "HHI", tag, kind, 1)
            out += struct.pack(order + "HH", value, 0) if kind == 3 else struct.pack(order + "I", value)
        last = index == len(pages) - 1
        out += struct.pack(order + "I", 0 if last else strip_at + len(strip))
        out += struct.pack(order + "3H", 8, 8, 8) + strip
    return bytes(out)


RGB = GRADIENT[:, :, ::-1].copy()  # TIFF and PNG store RGB; GRADIENT's channels are equal, so BGR == RGB


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _device(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _folder(path: Path) -> None:
    path.mkdir()


# (file name, how to make it, expected): a shape decoded, or a fragment of the skip message
CASES = [
    # formats and layouts that must decode, to the right shape
    ("rgb.png", png(20, 12, rows=_scanlines(RGB)), (12, 20, 3)),
    ("16bit.png", png(20, 12, bit_depth=16, rows=_scanlines(RGB.astype(">u2") * 257)), (12, 20, 3)),
    ("palette.png", png(4, 2, color_type=3, rows=b"\x00\x00\x01\x00\x01" * 2,
                        before_idat=_chunk(b"PLTE", b"\xff\x00\x00\x00\x00\xff")), (2, 4, 3)),
    ("gray-alpha.png", png(3, 2, color_type=4, rows=b"\x00" + b"\x80\xff" * 3 + b"\x00" + b"\x10\x00" * 3), (2, 3, 3)),
    ("1bit-gray.png", png(16, 2, color_type=0, bit_depth=1, rows=b"\x00\xff\x00\x00\x0f\xf0"), (2, 16, 3)),
    ("strip-1x100000.png", png(100000, 1, color_type=0, rows=b"\x00" + b"\x7f" * 100000), (1, 100000, 3)),
    ("strip-100000x1.png", png(1, 100000, color_type=0, rows=b"\x00\x7f" * 100000), (100000, 1, 3)),
    ("baseline.jpg", jpeg(), (12, 20, 3)),
    ("progressive.jpg", jpeg(progressive=True), (12, 20, 3)),
    ("exif-rotated.jpg", with_jpeg_segments(jpeg(), [exif_orientation(6)]), (20, 12, 3)),  # rotated 90 degrees
    ("huge-exif.jpg", with_jpeg_segments(jpeg(), [app1(b"Exif\x00\x00" + b"\x00" * 65000)] * 60), (12, 20, 3)),
    ("fill-bytes.jpg", with_jpeg_segments(jpeg(), [b"\xff\xff\xff"]), (12, 20, 3)),
    ("jpeg-inside.png", jpeg(), (12, 20, 3)),  # the magic bytes decide, not the suffix
    ("png-inside.jpg", png(20, 12, rows=_scanlines(RGB)), (12, 20, 3)),
    ("bottom-up.bmp", bmp(20, 12, GRADIENT), (12, 20, 3)),
    ("top-down.bmp", bmp(20, 12, GRADIENT, top_down=True), (12, 20, 3)),
    ("lossy.webp", webp(), (12, 20, 3)),
    ("lossless.webp", webp(lossless=True), (12, 20, 3)),
    ("extended.webp", webp_vp8x(20, 12, _vp8l_of(webp(lossless=True))), (12, 20, 3)),
    ("little-endian.tif", tiff([(20, 12, RGB)]), (12, 20, 3)),
    ("big-endian.tiff", tiff([(20, 12, RGB)], order=">"), (12, 20, 3)),
    ("second-page-is-a-bomb.tif", tiff([(20, 12, RGB), (60000, 60000, None)]), (12, 20, 3)),  # imdecode: page 1
    # bombs: a header claiming more than the budget, in every format; skipped before decoding
    ("bomb.png", png(16000, 8000), "16000x8000 pixels (128 MP)"),
    ("bomb-16bit-rgba.png", png(30000, 30000, color_type=6, bit_depth=16), "30000x30000"),
    ("bomb.jpg", with_jpeg_size(jpeg(), 65500, 65500, keep=700), "65500x65500"),
    ("bomb-progressive.jpg", with_jpeg_size(jpeg(progressive=True), 16000, 8000), "16000x8000"),
    ("bomb.bmp", bmp(20000, 20000), "20000x20000"),
    ("bomb-top-down.bmp", bmp(20000, 20000, top_down=True), "20000x20000"),
    ("negative-width.bmp", bmp(-20, 12), "BMP of negative width"),
    ("bomb-vp8.webp", webp()[:26] + struct.pack("<HH", 16383, 16383) + webp()[30:], "16383x16383"),
    ("bomb-vp8l.webp", _riff(_webp_chunk(b"VP8L", with_vp8l_size(_vp8l_of(webp(lossless=True)), 16384, 16384))),
     "16384x16384"),
    ("bomb-canvas.webp", webp_vp8x(1 << 24, 1 << 24, _vp8l_of(webp(lossless=True))), "16777216x16777216"),
    ("bomb.tif", tiff([(20000, 20000, None)]), "20000x20000"),
    ("bomb-big-endian.tif", tiff([(20000, 20000, None)], order=">"), "20000x20000"),
    ("bomb-behind-a-duplicate-tag.tif", tiff([(20, 12000, None)], duplicate_width=60000), "60000x12000"),  # larger
    ("ppm-bomb.jpg", b"P6\n30000 30000\n255\n" + b"\x00" * 64, "not a JPEG, PNG, BMP, WebP or TIFF"),
    # headers that lie or say nothing
    ("zero-size.png", png(0, 0, rows=b""), "0x0 pixels (an empty image)"),
    ("dnl-height-0.jpg", with_jpeg_size(jpeg(), 20, 0), "20x0 pixels (an empty image)"),
    ("canvas-smaller-than-frame.webp", webp_vp8x(20, 12, with_vp8l_size(_vp8l_of(webp(lossless=True)), 16384, 16384)),
     "not a decodable WebP"),  # libwebp refuses a frame larger than its canvas
    ("truncated-after-soi.jpg", b"\xff\xd8", "truncated header"),
    ("only-app-segments.jpg", with_jpeg_segments(b"\xff\xd8", [b"\xff\xfe\x00\x02"] * 5000), "first 4096 segments"),
    ("no-ihdr.png", b"\x89PNG\r\n\x1a\n" + _chunk(b"tEXt", b"Comment\x00" + b"x" * 20), "without an IHDR"),
    ("ifd-past-the-end.tif", b"II*\x00" + struct.pack("<I", 10 ** 9), "truncated header"),
    ("bigtiff.tif", b"II+\x00\x08\x00\x00\x00" + b"\x00" * 16, "not a JPEG, PNG, BMP, WebP or TIFF"),
    ("gif-inside.png", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "not a JPEG, PNG, BMP, WebP or TIFF"),
    ("text.jpg", b"<html>not an image</html>", "not a JPEG, PNG, BMP, WebP or TIFF"),
    ("empty.png", b"", "an empty file"),
    ("corrupt-body.png", png(20, 12, rows=b"\x00" * 5)[:-12] + _chunk(b"IEND", b""), "not a decodable PNG"),
    # not files at all: refused without opening them for long (a FIFO would wait for a writer forever)
    ("fifo.jpg", _fifo, "a FIFO, socket or device"),
    ("dev-zero.jpg", _device, "a FIFO, socket or device"),
    ("folder.jpg", _folder, "a directory"),
]


def _make(folder: Path, name: str, content) -> Path:
    path = folder / name
    if callable(content):
        content(path)
    else:
        path.write_bytes(content)
    return path


@pytest.fixture
def no_hang():
    """Fail, rather than hang, a test that opens a FIFO or reads a device."""
    def timeout(signum, frame):
        raise TimeoutError("read_image blocked")
    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(("name", "content", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hostile_image_decodes_or_is_skipped_naming_it(tmp_path, no_hang, name, content, expected):
    path = _make(tmp_path, name, content)
    if isinstance(expected, tuple):
        assert read_image(path).shape == expected
        return
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


@pytest.mark.parametrize(("name", "content", "expected_bgr"), [
    ("palette.png", CASES[2][1], [[0, 0, 255], [255, 0, 0], [0, 0, 255], [255, 0, 0]]),  # red, blue, red, blue
    ("16bit.png", CASES[1][1], GRADIENT[0].tolist()),  # v * 257 reads back as v
    ("1bit-gray.png", CASES[4][1], [[255] * 3] * 8 + [[0] * 3] * 8),
], ids=["palette", "16-bit", "1-bit"])
def test_odd_pngs_decode_to_their_pixels(tmp_path, name, content, expected_bgr):
    assert read_image(_make(tmp_path, name, content))[0].tolist() == expected_bgr


def test_bomb_budget_is_what_the_message_says():
    assert MAX_IMAGE_PIXELS == 120_000_000  # README: "over 120 MP"; change both together


def test_folder_of_hostile_files_lists_only_files_and_skips_each_bad_one_once(tmp_path, no_hang):
    for name, content, _ in CASES:
        _make(tmp_path, name, content)
    listed = list_images(tmp_path)
    assert {p.name for p in listed} == {name for name, content, _ in CASES if not callable(content)}
    with pytest.warns(SkippedImageWarning) as caught:
        decoded = [p.name for p, _ in iter_images(listed)]
    assert decoded == sorted(name for name, _, expected in CASES if isinstance(expected, tuple))
    skipped = [str(w.message) for w in caught]
    assert len(skipped) == len(listed) - len(decoded)
    assert all(any(f"/{p.name}: " in s for s in skipped) for p in listed if p.name not in decoded)


# VmHWM, not getrusage's ru_maxrss: across fork and exec Linux carries the parent's peak into the child's,
# so under a large pytest process the child would read the parent's
PEAK_SCRIPT = """
import json, sys
from quantlab.errors import ImageError
from quantlab.images import read_image
for path in sys.argv[1:]:
    try:
        read_image(path)
    except ImageError:
        pass
status = open("/proc/self/status").read().splitlines()
print(json.dumps(int(next(line for line in status if line.startswith("VmHWM:")).split()[1])))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak from Linux's /proc")
def test_bombs_cost_no_memory(tmp_path):
    """In a child, every bomb is read in turn: its peak memory is that of importing cv2 and numpy,
    not of the gigabytes the headers claim (VmHWM, in KiB)."""
    bombs = [_make(tmp_path, name, content) for name, content, expected in CASES
             if name.startswith(("bomb", "ppm-bomb", "second-page"))]
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, *map(str, bombs)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) < 250 * 1024
