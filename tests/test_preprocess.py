"""The YOLOv8 letterbox: exact cases computed by hand, and properties over any size."""

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantlab.errors import ImageError
from quantlab.preprocess import PAD_VALUE, boxes_to_image, fit, letterbox, to_bgr8

sizes = st.tuples(st.integers(1, 4000), st.integers(1, 4000))
targets = st.tuples(st.integers(8, 640), st.integers(8, 640))


@pytest.mark.parametrize(
    ("image_hw", "input_hw", "scale", "content_hw", "pad_left", "pad_top"),
    [
        # 640x480 landscape into 192x320: height-limited, 0.4 scale, 256 px wide, 32 px each side
        ((480, 640), (192, 320), 0.4, (192, 256), 32, 0),
        # square into landscape: 192/100 scale, pad (320-192)/2 = 64 each side
        ((100, 100), (192, 320), 1.92, (192, 192), 64, 0),
        # portrait 1000x200 into 192x320: 0.192 scale, 38.4 -> 38 px wide, pad 282 -> 141 each side
        ((1000, 200), (192, 320), 0.192, (192, 38), 141, 0),
        # one spare row: top round(0.5 - 0.1) = 0, bottom round(0.5 + 0.1) = 1
        ((319, 320), (320, 320), 1.0, (319, 320), 0, 0),
        # wide thin image: width-limited, pad (192-1)/2 = 95.5 -> top round(95.4)=95
        ((1, 320), (192, 320), 1.0, (1, 320), 0, 95),
        # rounding edge: 333 * 0.384 = 127.87 -> 128 wide (truncation gives 127); pad round(95.9) = 96
        ((500, 333), (192, 320), 0.384, (192, 128), 96, 0),
        # rounding edge: 100 * 2/3 = 66.67 -> 67 high (truncation gives 66); pad round(62.4) = 62 (63 for 66)
        ((100, 480), (192, 320), 2 / 3, (67, 320), 0, 62),
        # a 1-px-wide sliver keeps one column (0.064 would round to 0); pad round(159.5 - 0.1) = 159
        ((3000, 1), (192, 320), 0.064, (192, 1), 159, 0),
    ],
    ids=["landscape", "square", "portrait", "odd-pad", "one-row", "round-up-width", "round-up-height", "sliver"],
)
def test_letterbox_geometry_matches_hand_computation(image_hw, input_hw, scale, content_hw, pad_left, pad_top):
    geometry, new_hw = fit(image_hw, input_hw)
    assert (geometry.image_hw, geometry.input_hw) == (image_hw, input_hw)
    assert geometry.scale == pytest.approx(scale)
    assert new_hw == content_hw
    assert (geometry.pad_left, geometry.pad_top) == (pad_left, pad_top)


def test_content_occupies_exactly_the_rounded_size_at_a_rounding_edge():
    """333 x 0.384 = 127.87: the content is 128 columns (96..223), padding 96 left and 96 right."""
    tensor, geometry = letterbox(np.full((500, 333, 3), 7, np.uint8), (192, 320))
    content_columns = np.nonzero(tensor[0, 0, 100] != np.float32(PAD_VALUE) / np.float32(255))[0]
    assert (content_columns.min(), content_columns.max()) == (96, 223)
    assert geometry.scale == pytest.approx(0.384)


def test_letterbox_pixels_match_ultralytics_recipe():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    tensor, _ = letterbox(image, (192, 320))
    resized = cv2.resize(image, (256, 192), interpolation=cv2.INTER_LINEAR)
    expected = cv2.copyMakeBorder(resized, 0, 0, 32, 32, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    expected = expected[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255
    np.testing.assert_array_equal(tensor, expected)


@given(image_hw=sizes, input_hw=targets)
def test_letterbox_shape_range_and_padding(image_hw, input_hw):
    image = np.full((*image_hw, 3), 7, np.uint8)
    tensor, g = letterbox(image, input_hw)
    assert tensor.shape == (1, 3, *input_hw) and tensor.dtype == np.float32
    assert tensor.min() >= 0 and tensor.max() <= 1
    pad = np.float32(PAD_VALUE) / np.float32(255)
    if g.pad_left > 0:
        assert np.all(tensor[..., : g.pad_left] == pad)
    if g.pad_top > 0:
        assert np.all(tensor[..., : g.pad_top, :] == pad)
    content = tensor[0, 0] != pad
    rows, cols = np.nonzero(content)
    assert (rows.min(), cols.min()) == (g.pad_top, g.pad_left)  # content starts right after the padding
    content_h, content_w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    # the content size is the scaled size rounded to the nearest pixel (never truncated), at least 1 px
    assert content_w == max(1, round(image_hw[1] * g.scale)) and content_h == max(1, round(image_hw[0] * g.scale))
    assert abs(content_w - image_hw[1] * g.scale) <= 0.5 or content_w == 1
    assert abs(content_h - image_hw[0] * g.scale) <= 0.5 or content_h == 1
    # the limiting side fills the input; the padding is split evenly, the odd pixel going right/bottom
    assert content_h == input_hw[0] or content_w == input_hw[1]
    assert 0 <= (input_hw[1] - content_w) - 2 * g.pad_left <= 1
    assert 0 <= (input_hw[0] - content_h) - 2 * g.pad_top <= 1


@given(image_hw=sizes, input_hw=targets, data=st.data())
def test_boxes_round_trip_within_one_pixel(image_hw, input_hw, data):
    h, w = image_hw
    x1 = data.draw(st.floats(0, w))
    y1 = data.draw(st.floats(0, h))
    x2 = data.draw(st.floats(x1, w))
    y2 = data.draw(st.floats(y1, h))
    geometry, _ = fit(image_hw, input_hw)
    box = np.array([[x1, y1, x2, y2]], np.float32)
    in_letterbox = box * geometry.scale + [geometry.pad_left, geometry.pad_top, geometry.pad_left, geometry.pad_top]
    back = boxes_to_image(in_letterbox, geometry)
    # one letterbox pixel, seen from the original image, is 1/scale pixels wide
    assert np.all(np.abs(back - box) <= max(1.0, 1e-3 / geometry.scale))


def test_boxes_map_with_scale_and_padding_known_answer():
    """Scale 0.4, 32 px left: letterbox x 72 -> (72 - 32) / 0.4 = 100; y 20 -> 50 (no top padding)."""
    geometry, _ = fit((480, 640), (192, 320))
    np.testing.assert_allclose(boxes_to_image(np.array([[72, 20, 152, 100]], np.float32), geometry),
                               [[100, 50, 300, 250]], rtol=1e-6)
    geometry, _ = fit((100, 480), (192, 320))  # scale 2/3, 62 px on top
    back = boxes_to_image(np.array([[20, 82, 40, 122], [0, 62, 320, 128.667]], np.float64), geometry)
    assert back.dtype == np.float32  # any input dtype, float32 out
    np.testing.assert_allclose(back, [[30, 30, 60, 90], [0, 0, 480, 100]], rtol=1e-5)


def test_boxes_to_image_clips_to_the_image():
    geometry, _ = fit((480, 640), (192, 320))
    out = boxes_to_image(np.array([[-50, -50, 400, 400]], np.float32), geometry)
    np.testing.assert_array_equal(out, [[0, 0, 640, 480]])


@given(image_hw=st.tuples(st.integers(1, 300), st.integers(1, 300)), seed=st.integers(0, 2**32 - 1))
def test_other_formats_equal_their_8bit_bgr_equivalent(image_hw, seed):
    rng = np.random.default_rng(seed)
    gray = rng.integers(0, 256, image_hw, dtype=np.uint8)
    bgr = rng.integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (*image_hw, 1), dtype=np.uint8)
    target = (96, 160)
    as_bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    for variant, reference in [
        (gray, as_bgr),
        (gray[..., None], as_bgr),
        (np.concatenate([bgr, alpha], axis=2), bgr),
        (bgr.astype(np.uint16) * 257, bgr),  # 16-bit: v * 257 is the 16-bit form of v
    ]:
        np.testing.assert_array_equal(letterbox(variant, target)[0], letterbox(reference, target)[0])


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((2, 4, 4, 3), np.uint8)],
    ids=["two-channels", "float32", "batch"],
)
def test_unsupported_arrays_raise_image_error(bad):
    with pytest.raises(ImageError, match="expected"):
        to_bgr8(bad)
