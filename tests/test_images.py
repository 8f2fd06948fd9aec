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
