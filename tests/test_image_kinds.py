"""Every kind of image file OpenCV hands over (bit depths, gray, alpha, palette; PNG, BMP, TIFF, WebP, JPEG)
reaches the model as the same tensor, checked against a letterbox written here in numpy alone: content RGB / 255
placed at the hand-computed padding, the padding 114 / 255. The image (6 x 8) fits an 8 x 8 input unscaled,
so no resampling enters the reference: a wrong channel order, bit-depth reduction, alpha handling or
normalisation shows as a wrong value."""

import struct
import zlib

import cv2
import numpy as np
import pytest

from quantlab.images import IMAGE_SUFFIXES, list_images, read_image
from quantlab.preprocess import letterbox, to_bgr8

INPUT_HW = (8, 8)
# (6, 8, 3) RGB: red rises along x, green along y, blue is constant, so any channel or axis swap shows
RGB = np.dstack([np.tile(np.arange(8, dtype=np.uint8) * 30 + 5, (6, 1)),
                 np.tile((np.arange(6, dtype=np.uint8) * 40 + 20)[:, None], (1, 8)),
                 np.full((6, 8), 200, np.uint8)])
GRAY = RGB[..., 0]
JPEG_ERROR = 24  # quality 100 still subsamples chroma: sharp 8-px edges move by up to 21 levels; a swap moves 100+


def reference_tensor(rgb: np.ndarray) -> np.ndarray:
    """Ultralytics' letterbox of a 6 x 8 RGB image into 8 x 8, in numpy: pad_top 1, pad_bottom 1, none left."""
    out = np.full((3, *INPUT_HW), 114, np.float64)
    out[:, 1:7, :] = rgb.transpose(2, 0, 1)
    return (out / 255)[None]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(samples: np.ndarray, color_type: int, palette: bytes = b"") -> bytes:
    """A PNG of (H, W, C) samples (uint8, or uint16 written big-endian), written by hand."""
    height, width = samples.shape[:2]
    depth = 16 if samples.dtype == np.uint16 else 8
    rows = samples.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1)
    data = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + (_chunk(b"PLTE", palette) if palette else b"")
            + _chunk(b"IDAT", zlib.compress(data)) + _chunk(b"IEND", b""))


def _alpha(shape) -> np.ndarray:
    return (np.arange(np.prod(shape)) * 37 % 256).astype(np.uint8).reshape(shape)  # varied, never composited


def _palette_png() -> bytes:
    colours, index = np.unique(RGB.reshape(-1, 3), axis=0, return_inverse=True)
    return png(index.reshape(6, 8, 1).astype(np.uint8), 3, colours.astype(np.uint8).tobytes())


def _encoded(suffix: str, bgr: np.ndarray, *params) -> bytes:
    return cv2.imencode(suffix, bgr, list(params))[1].tobytes()


BGR = RGB[..., ::-1]
GRAY_RGB = np.dstack([GRAY] * 3)
CASES = [
    # (file name, bytes, the RGB the model must see)
    ("gray8.png", png(GRAY[..., None], 0), GRAY_RGB),
    ("gray16.png", png(GRAY[..., None].astype(np.uint16) * 257, 0), GRAY_RGB),  # v * 257 is v in 16 bits
    ("gray-alpha.png", png(np.dstack([GRAY, _alpha(GRAY.shape)]), 4), GRAY_RGB),  # alpha dropped
    ("rgb8.png", png(RGB, 2), RGB),
    ("rgb16.png", png(RGB.astype(np.uint16) * 257, 2), RGB),
    ("rgba8.png", png(np.dstack([RGB, _alpha(GRAY.shape)]), 6), RGB),
    ("rgba16.png", png(np.dstack([RGB, _alpha(GRAY.shape)]).astype(np.uint16) * 257, 6), RGB),
    ("palette.png", _palette_png(), RGB),
    ("bgr.bmp", _encoded(".bmp", BGR), RGB),
    ("gray.bmp", _encoded(".bmp", GRAY), GRAY_RGB),
    ("bgra.tiff", _encoded(".tiff", np.dstack([BGR, _alpha(GRAY.shape)])), RGB),
    ("bgr16.tif", _encoded(".tif", BGR.astype(np.uint16) * 257), RGB),
    ("lossless.webp", _encoded(".webp", BGR, cv2.IMWRITE_WEBP_QUALITY, 101), RGB),
]


@pytest.mark.parametrize(("name", "content", "rgb"), CASES, ids=[c[0] for c in CASES])
def test_every_image_kind_gives_the_reference_tensor(tmp_path, name, content, rgb):
    path = tmp_path / name
    path.write_bytes(content)
    tensor, geometry = letterbox(read_image(path), INPUT_HW)
    assert (geometry.scale, geometry.pad_left, geometry.pad_top) == (1.0, 0, 1)
    np.testing.assert_allclose(tensor, reference_tensor(rgb), atol=1e-7)
    assert tensor.dtype == np.float32


def test_a_jpeg_gives_the_reference_tensor_within_its_compression_error(tmp_path):
    path = tmp_path / "q100.jpg"
    path.write_bytes(_encoded(".jpg", BGR, cv2.IMWRITE_JPEG_QUALITY, 100))
    tensor, _ = letterbox(read_image(path), INPUT_HW)
    np.testing.assert_allclose(tensor, reference_tensor(RGB), atol=JPEG_ERROR / 255)


ARRAY_CASES = [
    # arrays a caller may pass straight to letterbox: (name, array, the RGB the model must see)
    ("gray-2d", GRAY, GRAY_RGB),
    ("gray-1-channel", GRAY[..., None], GRAY_RGB),
    ("bgra", np.dstack([BGR, _alpha(GRAY.shape)]), RGB),
    # 16 bits keep their high byte: 65280 (0xFF00) is 255 and 256 (0x0100) is 1 (dividing by 257 gives 254, 0)
    ("bgr16-high-byte", np.dstack([np.full((6, 8), 65280), np.full((6, 8), 256), np.full((6, 8), 4095)]).astype(
        np.uint16), np.dstack([np.full((6, 8), 15), np.full((6, 8), 1), np.full((6, 8), 255)]).astype(np.uint8)),
]


@pytest.mark.parametrize(("name", "array", "rgb"), ARRAY_CASES, ids=[c[0] for c in ARRAY_CASES])
def test_every_array_kind_gives_the_reference_tensor(name, array, rgb):
    np.testing.assert_array_equal(to_bgr8(array)[..., ::-1], rgb)
    np.testing.assert_allclose(letterbox(array, INPUT_HW)[0], reference_tensor(rgb), atol=1e-7)


LOSSLESS = {".png": (), ".bmp": (), ".tif": (), ".tiff": (), ".webp": (cv2.IMWRITE_WEBP_QUALITY, 101)}


@pytest.mark.parametrize("suffix", sorted(IMAGE_SUFFIXES | {s.upper() for s in IMAGE_SUFFIXES}))
def test_every_image_suffix_is_listed_and_decoded(tmp_path, suffix):
    """Each suffix quantlab lists, in either case, is found and decodes to its pixels (JPEG within its error)."""
    encoder = suffix.lower() if suffix.lower() in LOSSLESS else ".jpg"
    (tmp_path / f"image{suffix}").write_bytes(_encoded(encoder, BGR, *LOSSLESS.get(encoder, ())))
    (tmp_path / "notes.txt").write_text("not an image")
    (listed,) = list_images(tmp_path)
    assert listed.name == f"image{suffix}"
    tolerance = 0 if encoder in LOSSLESS else JPEG_ERROR
    assert np.abs(read_image(listed).astype(int) - BGR).max() <= tolerance


def test_the_suffixes_are_those_opencv_decodes_for_yolo_datasets():
    """Ultralytics' image formats that OpenCV decodes everywhere; a dropped one silently skips a dataset's images."""
    assert IMAGE_SUFFIXES == {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
