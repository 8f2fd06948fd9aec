"""The calibration reader: seeded sampling, lazy one-image-at-a-time reading, rewind."""

import hashlib
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from quantlab.calibration import ImageCalibrationReader, sample_digest, sample_images, split_sample
from quantlab.errors import SkippedImageWarning
from quantlab.images import read_image
from quantlab.preprocess import letterbox


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    for i in range(300):
        ok, data = cv2.imencode(".png", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
        (folder / f"img_{i:03d}.png").write_bytes(data.tobytes())
    return sorted(folder.iterdir())


def test_same_seed_same_sample_other_seed_other_sample(image_folder):
    a = sample_images(image_folder, 100, seed=3)
    assert a == sample_images(list(reversed(image_folder)), 100, seed=3)
    assert a != sample_images(image_folder, 100, seed=4)
    assert len(set(a)) == 100 and a == sorted(a)
    assert sample_digest(a) != sample_digest(sample_images(image_folder, 100, seed=4))


@pytest.mark.parametrize(("count", "num_calib", "calibrated", "checked"), [
    (300, 100, 100, 8),  # images to spare: the calibration sample is sample_images' own, 8 others judge
    (108, 100, 100, 8),  # exactly enough to spare
    (107, 100, 99, 8),  # one short: 8 held out first, the other 99 calibrate
    (10, 100, 5, 5),  # a small folder: at most half is held out
    (2, 100, 1, 1),
    (1, 100, 1, 0),  # one image: nothing to hold out, it calibrates and judges
], ids=["spare", "exactly-enough", "one-short", "ten-images", "two-images", "one-image"])
def test_check_images_are_held_out_from_calibration(image_folder, count, num_calib, calibrated, checked):
    calib, check = split_sample(image_folder[:count], num_calib, 8, seed=3)
    assert (len(calib), len(check)) == (calibrated, checked)
    assert not set(calib) & set(check)
    assert set(calib) | set(check) <= set(image_folder[:count])
    if count - num_calib >= 8:  # the same calibration, so the same INT8 bytes, as before check images were held out
        assert calib == sample_images(image_folder[:count], num_calib, seed=3)
    assert split_sample(list(reversed(image_folder[:count])), num_calib, 8, seed=3) == (calib, check)


def test_asking_for_more_than_exist_takes_all(image_folder):
    assert sample_images(image_folder[:5], 100, seed=0) == image_folder[:5]


def test_reader_yields_each_sampled_image_then_none_and_rewinds(image_folder):
    reader = ImageCalibrationReader(image_folder, "images", (96, 128), num_images=10, seed=0)
    first = [reader.get_next()["images"] for _ in range(10)]
    assert reader.get_next() is None and reader.used == 10
    assert all(t.shape == (1, 3, 96, 128) and t.dtype == np.float32 for t in first)
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["images"], first[0])


def test_reader_memory_stays_bounded(image_folder):
    """300 images of (1, 3, 96, 128) float32 would hold 44 MB; the reader holds one at a time."""
    reader = ImageCalibrationReader(image_folder, "images", (96, 128), num_images=300, seed=0)
    tracemalloc.start()
    count = 0
    while reader.get_next() is not None:
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    one_tensor = 3 * 96 * 128 * 4
    assert count == 300
    assert peak < 10 * one_tensor


def test_fewer_than_one_image_is_refused(image_folder):
    with pytest.raises(ValueError, match="num_images must be at least 1, got 0"):
        sample_images(image_folder, 0, seed=0)


def test_asking_for_exactly_all_takes_all_in_order(image_folder):
    assert sample_images(list(reversed(image_folder[:7])), 7, seed=5) == image_folder[:7]


def test_the_digest_is_over_file_names_in_order():
    """The record of which images calibrated a model: sha256 of the names, one per line."""
    paths = [Path("/a/x/1.png"), Path("/b/2.png")]
    assert sample_digest(paths) == hashlib.sha256(b"1.png\n2.png").hexdigest()
    assert sample_digest(paths) == sample_digest([Path("/elsewhere/1.png"), Path("2.png")])


def test_reader_feeds_the_letterboxed_sampled_images_in_order(image_folder):
    reader = ImageCalibrationReader(image_folder, "images", (96, 128), num_images=3, seed=1)
    assert reader.paths == sample_images(image_folder, 3, seed=1) and len(reader) == 3
    for path in reader.paths:
        np.testing.assert_array_equal(reader.get_next()["images"], letterbox(read_image(path), (96, 128))[0])


def test_unreadable_images_are_skipped_with_a_warning_and_not_counted(tmp_path, image_folder):
    broken = tmp_path / "img_000_broken.png"
    broken.write_bytes(b"not a png")
    reader = ImageCalibrationReader([image_folder[0], broken, image_folder[1]], "x", (32, 32), num_images=3)
    with pytest.warns(SkippedImageWarning, match="img_000_broken.png"):
        fed = [reader.get_next() for _ in range(3)]
    assert [f is None for f in fed] == [False, False, True] and reader.used == 2
    reader.rewind()
    assert reader.used == 0 and reader.get_next() is not None and reader.used == 1
