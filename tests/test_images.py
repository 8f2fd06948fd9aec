"""Image discovery and decoding: sorted, any suffix case, non-ASCII paths, corrupt files skipped."""

import cv2
import numpy as np
import pytest

from quantlab.errors import ImageError, SkippedImageWarning
from quantlab.images import iter_images, list_images, read_image


def _write_jpg(path, value=90, hw=(20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".jpg", np.full((*hw, 3), value, np.uint8))
    path.write_bytes(data.tobytes())
    return path


def test_lists_images_sorted_with_any_suffix_case(tmp_path):
    for name in ["b.JPG", "a.png", "c.webp", "notes.txt", "d.Jpeg"]:
        if name.endswith(".txt"):
            (tmp_path / name).write_text("x")
        else:
            ok, data = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
            (tmp_path / name).write_bytes(data.tobytes())
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.webp", "d.Jpeg"]


def test_recursive_listing_finds_sub_folders(tmp_path):
    _write_jpg(tmp_path / "sub" / "x.jpg")
    with pytest.raises(ImageError, match="recursive"):
        list_images(tmp_path)
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["x.jpg"]


def test_non_ascii_and_space_paths_decode(tmp_path):
    path = _write_jpg(tmp_path / "모델 폴더" / "이미지 1.jpg", value=200)
    image = read_image(path)
    assert image.shape == (20, 30, 3) and abs(int(image.mean()) - 200) <= 2


def test_corrupt_file_is_skipped_with_one_warning_naming_it(tmp_path):
    good = _write_jpg(tmp_path / "a.jpg")
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.warns(SkippedImageWarning, match="b.jpg") as caught:
        decoded = list(iter_images([good, bad]))
    assert [p for p, _ in decoded] == [good]
    assert len(caught) == 1


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "only nothing"),
        (lambda d: (d / "readme.md").write_text("x"), r"only 1 other files \(\.md\)"),
    ],
    ids=["empty", "no-images"],
)
def test_folder_without_images_names_folder_and_contents(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(ImageError, match=message) as info:
        list_images(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_missing_folder_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="not a directory"):
        list_images(tmp_path / "absent")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.full((6, 5), 77, np.uint8), np.full((6, 5, 3), 77, np.uint8)),  # grayscale -> 3 equal channels
        (np.full((6, 5, 3), 200 * 257, np.uint16), np.full((6, 5, 3), 200, np.uint8)),  # 16-bit scaled to 8-bit
        (np.dstack([np.full((6, 5, 3), 9, np.uint8), np.zeros((6, 5), np.uint8)]), np.full((6, 5, 3), 9, np.uint8)),
    ],
    ids=["gray", "16-bit", "bgra"],
)
def test_every_png_decodes_to_8bit_bgr(tmp_path, image, expected):
    ok, data = cv2.imencode(".png", image)
    (tmp_path / "x.png").write_bytes(data.tobytes())
    decoded = read_image(tmp_path / "x.png")
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, expected)


def test_images_in_sub_folders_are_left_out_unless_recursive(tmp_path):
    _write_jpg(tmp_path / "top.jpg")
    _write_jpg(tmp_path / "sub" / "deep.TIF")
    assert [p.name for p in list_images(tmp_path)] == ["top.jpg"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "sub/deep.TIF", "top.jpg"]


def test_images_are_read_one_at_a_time(tmp_path):
    """iter_images reads a file only when it is reached: nothing is read ahead or held."""
    first, second = _write_jpg(tmp_path / "a.jpg", value=10), _write_jpg(tmp_path / "b.jpg", value=20)
    images = iter_images([first, second])
    assert next(images)[0] == first
    _write_jpg(second, value=240)
    path, image = next(images)
    assert path == second and abs(int(image.mean()) - 240) <= 2


def test_an_empty_file_is_an_image_error_naming_it(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty.png: an empty file"):
        read_image(tmp_path / "empty.png")


def test_a_dangling_symlink_is_skipped_with_a_warning(tmp_path):
    """Was: dropped without a word, while a 0-byte file got a warning."""
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    paths = list_images(tmp_path)
    assert [p.name for p in paths] == ["a.png", "gone.jpg"]
    with pytest.warns(SkippedImageWarning, match="gone.jpg"):
        assert [p.name for p, _ in iter_images(paths)] == ["a.png"]
