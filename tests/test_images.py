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


# ---- pinned by the mutation triage (issue 28): each case fails on a one-token slip that survived mutmut ----

def _png(path, height=2, width=2):
    cv2.imwrite(str(path), np.zeros((height, width, 3), np.uint8))
    return path


def test_a_symlink_out_of_the_root_is_skipped_with_a_warning_at_the_callers_line(tmp_path, monkeypatch):
    from quantlab.images import ALLOW_OUTSIDE_ROOT

    outside = _png(tmp_path / "outside.png")
    folder = tmp_path / "data"
    folder.mkdir()
    inside = _png(folder / "a.png")
    (folder / "link.png").symlink_to(outside)
    with pytest.warns(SkippedImageWarning) as caught:
        assert list_images(folder) == [inside]
    message = str(caught[0].message)
    assert "link.png" in message and f"dataset root {folder.resolve()} (" in message and f"{ALLOW_OUTSIDE_ROOT}=1" in message
    if caught[0].filename.endswith("trampoline.py"):
        pytest.skip("under mutmut a trampoline frame sits between the caller and quantlab")
    assert caught[0].filename == __file__
    monkeypatch.setenv(ALLOW_OUTSIDE_ROOT, "1")
    assert list_images(folder) == [inside, folder / "link.png"]


def test_only_symlinks_out_of_the_root_is_one_error_naming_folder_root_and_fix(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "link.png").symlink_to(_png(tmp_path / "outside.png"))
    with pytest.warns(Warning), pytest.raises(ImageError) as error:
        list_images(folder)
    assert str(error.value) == (f"{folder}: each of its 1 images is a symlink leading outside {folder.resolve()}; "
                                "set QUANTLAB_ALLOW_OUTSIDE_ROOT=1 to follow them")


def test_a_symlink_loop_leads_outside(tmp_path):
    from quantlab.images import leads_outside

    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    assert leads_outside(tmp_path / "loop.png", tmp_path.resolve())


def test_a_symlink_to_a_folder_named_like_an_image_is_not_listed(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "folder.png").symlink_to(tmp_path / "sub")
    image = _png(tmp_path / "a.png")
    assert list_images(tmp_path) == [image]


@pytest.mark.parametrize("recursive", [False, True], ids=["flat", "recursive"])
def test_the_sub_folder_hint_is_given_only_without_recursive(tmp_path, recursive):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageError) as error:
        list_images(tmp_path, recursive=recursive)
    hint = "; images in sub-folders need recursive=True / --recursive"
    assert str(error.value).endswith("1 other files (.txt)" + ("" if recursive else hint))


def test_a_skipped_image_is_warned_at_the_line_that_iterates(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.warns(SkippedImageWarning) as caught:
        assert list(iter_images([tmp_path / "bad.png"])) == []
    if caught[0].filename.endswith("trampoline.py"):
        pytest.skip("under mutmut a trampoline frame sits between the caller and quantlab")
    assert caught[0].filename == __file__


def test_an_image_of_exactly_the_pixel_budget_decodes_and_one_of_one_pixel_too(tmp_path, monkeypatch):
    import quantlab.images

    assert read_image(_png(tmp_path / "one.png", 1, 1)).shape == (1, 1, 3)
    monkeypatch.setattr(quantlab.images, "MAX_IMAGE_PIXELS", 6)
    assert read_image(_png(tmp_path / "six.png", 2, 3)).shape == (2, 3, 3)
    with pytest.raises(ImageError, match="seven.png: a PNG whose header claims 7x1 pixels"):
        read_image(_png(tmp_path / "seven.png", 1, 7))


def test_a_file_over_the_byte_budget_is_refused_naming_it_and_both_sizes(tmp_path, monkeypatch):
    import quantlab.images

    monkeypatch.setattr(quantlab.images, "MAX_IMAGE_FILE_BYTES", 2 << 20)
    exact = _png(tmp_path / "exact.png")
    exact.write_bytes(exact.read_bytes().ljust(2 << 20, b"\0"))  # trailing bytes after IEND: still a PNG
    assert read_image(exact).shape == (2, 2, 3)
    big = _png(tmp_path / "big.png")
    big.write_bytes(big.read_bytes().ljust(3 << 20, b"\0"))
    with pytest.raises(ImageError, match=r"big.png: 3 MiB, larger than any image within the 120 MP budget \(2 MiB\)"):
        read_image(big)
