"""Hostile and odd datasets, as strangers' pull requests and downloads bring them. Each case ends in the right
result, or in one line naming the file; never a traceback, a hang, a wrong answer, or a secret's text in a
message. Every file is built in tmp_path."""

import os
import re
import signal
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from quantlab.cli import main
from quantlab.datasets import LabelWarning, load_dataset, read_labels
from quantlab.demo.shapes import write_dataset
from quantlab.errors import DatasetError, ExitCode, QuantlabError, SkippedImageWarning

SECRET = "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # a fake credential
SECRET_TAIL = SECRET[20:]  # what must never be shown: a message may quote 20 characters of a field, no more
LABEL = "0 0.5 0.5 0.2 0.2\n"


class Scene:
    """tmp_path/ds, the dataset root: images/val/a.png and b.png, each labelled LABEL in labels/val/. Outside
    it: a fake credential in tmp_path/home/.aws/credentials, an image folder tmp_path/elsewhere/images."""

    def __init__(self, tmp_path: Path):
        self.tmp, self.root = tmp_path, tmp_path / "ds"
        for name in ("a", "b"):
            self.image(f"images/val/{name}.png")
            self.write(f"labels/val/{name}.txt", LABEL)
        self.secret = tmp_path / "home" / ".aws" / "credentials"
        self.secret.parent.mkdir(parents=True)
        self.secret.write_text(f"{SECRET}\n[default]\n")
        self.elsewhere = tmp_path / "elsewhere" / "images"
        self.elsewhere.mkdir(parents=True)
        (self.elsewhere / "x.png").write_bytes(b"")

    def write(self, relative: str, text: str | bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
        return path

    def image(self, relative: str) -> Path:
        return self.write(relative, b"")  # never decoded here: load_dataset and read_labels read no pixels

    def link(self, relative: str, target: Path | str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(target)
        return path

    def yaml(self, content: str | bytes | dict = None, **spec) -> Path:
        """data.yaml from raw text or bytes, or from a spec over the default one (val images/val, names a b)."""
        if content is None or isinstance(content, dict):
            content = yaml.safe_dump({"val": "images/val", "names": ["a", "b"], **(content or {}), **spec})
        return self.write("data.yaml", content)


@dataclass
class Works:
    """Loads; these images (names) are kept, with these class ids each; a warning matching `warns` if given."""

    images: tuple = ("a.png", "b.png")
    classes: dict = field(default_factory=dict)
    warns: str | None = None
    names: dict | None = None


@dataclass
class Refused:
    """One QuantlabError line matching `pattern` and naming the file whose path ends with `file`."""

    pattern: str
    file: str = "data.yaml"


def _fifo(scene: Scene, relative: str) -> Path:
    path = scene.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


def _billion_laughs(scene):
    """616 bytes: nine levels of nine aliases each, a billion strings once expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level, previous in zip("bcdefghi", "abcdefgh"):
        lines.append(f"{level}: &{level} [{','.join([f'*{previous}'] * 9)}]")
    return scene.yaml("\n".join(lines) + "\nval: images/val\nnames: [a, b]\n")


def _python_tag(scene):
    marker = scene.tmp / "PWNED"
    return scene.yaml(f'val: !!python/object/apply:os.system ["touch {marker}"]\nnames: [a, b]\n')


def _two_megabytes(scene):
    return scene.yaml("val: images/val\nnames: [a, b]\n" + "# padding\n" * 210_000)


def _sparse_label(scene):
    """A 50 MB label file (sparse: no disk used)."""
    with open(scene.root / "labels/val/a.txt", "wb") as file:
        file.truncate(50 << 20)
    return scene.yaml()


def _label_to_secret(scene):
    scene.link("labels/val/a.txt", scene.secret)
    return scene.yaml()


def _list_lines(scene, *lines):
    scene.write("val.txt", "".join(f"{line}\n" for line in lines))
    return scene.yaml(val="val.txt")


def _newline_in_name(scene):
    scene.image("images/val/c\nd.png")
    scene.link("labels/val/c\nd.txt", scene.secret)
    return scene.yaml()


def _unicode_names(scene):
    return scene.yaml(names=["猫", "🐶 dog", "café"])


CASES = [
    # --- the data.yaml as text and YAML
    pytest.param(lambda s: s.yaml("val: images/val\nnames:\n\t- a\n\t- b\n"),
                 Refused(r"not valid YAML \(.*'\\t' that cannot start any token, line 3\)"), id="tab-indented"),
    pytest.param(lambda s: s.yaml(b"\xef\xbb\xbfval: images/val\r\nnames: [a, b]\r\n"), Works(), id="bom-crlf"),
    pytest.param(lambda s: s.yaml("- images/val\n- names\n"), Refused("its top level is a list, not a mapping"),
                 id="top-level-list"),
    pytest.param(lambda s: s.yaml("images/val\n"), Refused("its top level is a str"), id="top-level-string"),
    pytest.param(lambda s: s.yaml(""), Refused("its top level is empty"), id="empty-file"),
    pytest.param(_billion_laughs, Refused(r"refused: a YAML alias \(\*a, line 2\)"), id="billion-laughs"),
    pytest.param(lambda s: s.yaml("val: images/val\nnames: " + "[" * 10_000 + "]" * 10_000 + "\n"),
                 Refused("nested more than 32 deep"), id="nested-10000-deep"),
    pytest.param(_python_tag, Refused("could not determine a constructor for the tag"), id="python-object-tag"),
    pytest.param(_two_megabytes, Refused("larger than 1 MiB"), id="two-megabytes"),
    pytest.param(lambda s: s.yaml(bytes(range(256)) * 4), Refused(r"not UTF-8 text \(byte 128"), id="binary-garbage"),
    pytest.param(lambda s: s.yaml("val: images/val\x00\nnames: [a, b]\n"), Refused("unacceptable character #x0000"),
                 id="nul-character"),
    pytest.param(lambda s: s.yaml("val: elsewhere\nnames: [a, b]\nval: images/val\n"),
                 Refused(r"the key 'val' is given twice \(line 3\)"), id="duplicate-key"),
    pytest.param(lambda s: s.yaml("val: images/val\n---\nnames: [a, b]\n"), Refused("expected a single document"),
                 id="two-documents"),
    pytest.param(lambda s: s.yaml(f"val: images/val\nnames: [a, b]\nnc: {'9' * 5000}\n"),
                 Refused(r"not valid YAML \(Exceeds the limit"), id="integer-of-5000-digits"),
    # --- keys with odd values
    pytest.param(lambda s: s.yaml(val=123), Refused("split entry 123 is not a folder or .txt path"), id="val-a-number"),
    pytest.param(lambda s: s.yaml(val=None), Refused("the 'val' entry is empty"), id="val-null"),
    pytest.param(lambda s: s.yaml(val=[]), Refused("the 'val' entry is empty"), id="val-empty-list"),
    pytest.param(lambda s: s.yaml(val=str(s.elsewhere)), Refused("leads outside the dataset root"),
                 id="val-absolute-elsewhere"),
    pytest.param(lambda s: s.yaml(val="../../../../../../../../etc"), Refused("leads outside the dataset root"),
                 id="val-dotdot-to-etc"),
    pytest.param(lambda s: (s.root / "images" / "empty").mkdir() or s.yaml(val="images/empty"),
                 Refused("no images", file="images/empty"), id="empty-split-folder"),
    pytest.param(lambda s: s.yaml(val="images\\val"), Refused(r"write / for a folder, not \\"),
                 id="windows-backslashes"),
    pytest.param(lambda s: s.yaml(path="no/such/folder"), Refused("'path' 'no/such/folder' is not a folder"),
                 id="path-missing"),
    pytest.param(lambda s: s.yaml(path=["a", "b"]), Refused("'path' must be a folder path"), id="path-a-list"),
    pytest.param(_unicode_names, Works(names={0: "猫", 1: "🐶 dog", 2: "café"}), id="unicode-class-names"),
    pytest.param(lambda s: s.yaml(names=["a", "\x1b[2J\x1b[31mb"]), Refused(r"class name 1 '\\x1b\[2J\\x1b\[31mb' "
                 "holds a control character"), id="ansi-class-name"),
    pytest.param(lambda s: s.yaml(nc=80), Refused("'nc' is 80 but 'names' lists 2 classes"), id="nc-disagrees"),
    # --- the data.yaml, a split or a list that is not a plain file inside the dataset
    pytest.param(lambda s: _fifo(s, "data.yaml"), Refused("not a regular file"), id="data-yaml-a-fifo"),
    pytest.param(lambda s: (s.root / "data.yaml").mkdir() or s.root / "data.yaml", Refused("not a regular file"),
                 id="data-yaml-a-folder"),
    pytest.param(lambda s: s.link("data.yaml", "/dev/zero"), Refused("not a regular file"),
                 id="data-yaml-to-dev-zero"),
    pytest.param(lambda s: s.link("images/linked", s.elsewhere) and s.yaml(val="images/linked"),
                 Refused("split entry 'images/linked' leads outside the dataset root"), id="split-symlinked-out"),
    pytest.param(lambda s: s.link("val.txt", s.secret) and s.yaml(val="val.txt"),
                 Refused("split entry 'val.txt' leads outside"), id="list-symlinked-to-a-secret"),
    # --- images and labels inside a good data.yaml
    pytest.param(_label_to_secret, Works(images=("b.png",), warns=r"a.png: its label file .*a.txt is a symlink "
                                         r"leading outside the dataset root"), id="label-symlinked-to-a-secret"),
    pytest.param(lambda s: s.link("images/val/c.png", s.elsewhere / "x.png") and s.yaml(),
                 Works(warns=r"c.png: a symlink leading outside the dataset root"), id="image-symlinked-out"),
    pytest.param(lambda s: s.link("images/val/loop.png", s.root / "images/val/loop.png") and s.yaml(),
                 Works(warns=r"loop.png: a symlink leading outside"), id="image-symlink-loop"),
    pytest.param(lambda s: _list_lines(s, "images/val/a.png", "../elsewhere/images/x.png"),
                 Works(images=("a.png",), warns=r"val.txt:2: '../elsewhere/images/x.png' leads outside"),
                 id="list-line-dotdot"),
    pytest.param(lambda s: _list_lines(s, "./images/val/a.png", "", str(s.elsewhere / "x.png"), "notes.md"),
                 Works(images=("a.png",), warns=r"val.txt:3: .* leads outside the dataset root"),
                 id="list-line-absolute-elsewhere"),
    pytest.param(lambda s: _fifo(s, "images/val/p.png") and _list_lines(s, "images/val/a.png", "images/val/p.png"),
                 Works(images=("a.png",), warns=r"val.txt:2: 'images/val/p.png' is not a regular file"),
                 id="list-line-a-fifo"),
    pytest.param(lambda s: _list_lines(s, "images/val/a.png", "images/" + "x/" * 1_000_000 + "b.png"),
                 Works(images=("a.png",), warns=r"val.txt:2: 'images/x/x/x/x/x/x/x'\.\.\. is longer than any path"),
                 id="list-line-of-2-million-characters"),
    pytest.param(lambda s: _list_lines(s, "images/val/a.png", "images/val/\x1b[2Jmissing.png"),
                 Works(images=("\x1b[2Jmissing.png", "a.png")), id="list-line-missing-with-terminal-escape"),
    pytest.param(lambda s: _list_lines(s, "images/val/a.png", "images/val/b\x00.png"),
                 Works(images=("a.png",), warns=r"val.txt:2: 'images/val/b\\x00.png' leads outside"),
                 id="list-line-with-a-nul"),
    pytest.param(lambda s: (s.root / "images/val/folder.png").mkdir() or s.yaml(), Works(), id="folder-named-x.png"),
    pytest.param(lambda s: _fifo(s, "labels/val/a.txt") and s.yaml(),
                 Works(images=("b.png",), warns=r"a.png: its label file .*a.txt is not a regular file"),
                 id="label-a-fifo"),
    pytest.param(lambda s: (s.root / "labels/val/a.txt").unlink() or (s.root / "labels/val/a.txt").mkdir() or s.yaml(),
                 Works(images=("b.png",), warns="is not a regular file"), id="label-a-folder-named-x.txt"),
    pytest.param(_newline_in_name, Works(warns=r"images/val/c\\x0ad.png: its label file .*c\\x0ad.txt is a symlink"),
                 id="newline-in-a-file-name"),
    pytest.param(_sparse_label, Refused("larger than 16 MiB", file="a.txt"), id="label-of-50-megabytes"),
    pytest.param(lambda s: s.write("labels/val/a.txt", "0 0.5 nan 0.2 0.2\n" + LABEL) and s.yaml(),
                 Works(classes={"a.png": [0]}, warns=r"a.txt:1: field 3 is not a finite number: 'nan'"),
                 id="label-nan"),
    pytest.param(lambda s: s.write("labels/val/a.txt", "inf 0.5 0.5 0.2 0.2\n") and s.yaml(),
                 Works(classes={"a.png": []}, warns=r"a.txt:1: field 1 is not a finite number: 'inf'"),
                 id="label-class-inf"),
    pytest.param(lambda s: s.write("labels/val/a.txt", "0 0.5 0.5 1e309 0.2\n") and s.yaml(),
                 Works(classes={"a.png": []}, warns=r"field 4 is not a finite number: '1e309'"), id="label-1e309"),
    pytest.param(lambda s: s.write("labels/val/a.txt", "0 " + "0.5 0.25 " * 50_000 + "0.75 0.75\n") and s.yaml(),
                 Works(classes={"a.png": [0]}), id="label-line-of-100k-fields"),
    pytest.param(lambda s: s.write("labels/val/a.txt", "0 0.5 \x1b]0;pwned\x07 0.2 0.2\n") and s.yaml(),
                 Works(classes={"a.png": []}, warns=r"field 3 is not a number: '\\x1b\]0;pwned\\x07'"),
                 id="label-terminal-escape"),
    pytest.param(lambda s: s.write("labels/val/a.txt", "0 " + "x" * 10_000 + " 0.5 0.2 0.2\n") and s.yaml(),
                 Works(classes={"a.png": []}, warns=r"field 2 is not a number: 'x{20}'\.\.\.; line skipped"),
                 id="label-field-of-10k-characters"),
    pytest.param(lambda s: s.write("labels/val/a.txt", b"\xff\xfe0 0.5\n") and s.yaml(),
                 Refused(r"not UTF-8 text \(byte 0: b'\\xff'\)", file="a.txt"), id="label-utf16"),
]


@contextmanager
def _at_most(seconds: float):
    """TimeoutError where the block takes longer: a pipe read by mistake would hang for ever."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _evaluate_labels(data: Path):
    """What `quantlab eval --data` reads before any pixel: the dataset, then every image's labels."""
    dataset = load_dataset(data)
    return dataset, {image.name: read_labels(image, (100, 100), len(dataset.names)) for image in dataset.images}


@pytest.mark.parametrize(("build", "expected"), CASES)
def test_a_hostile_or_odd_dataset(tmp_path, build, expected):
    scene = Scene(tmp_path)
    data = build(scene)
    error = None
    with warnings.catch_warnings(record=True) as caught, _at_most(10):
        warnings.simplefilter("always")
        try:
            dataset, labels = _evaluate_labels(data)
        except QuantlabError as exc:  # anything else fails the test with its traceback: a bug
            error = exc
    messages = [str(w.message) for w in caught] + ([str(error)] if error else [])
    for message in messages:
        assert "\n" not in message and "\x1b" not in message, message  # one line, no terminal control
        assert SECRET_TAIL not in message and "[default]" not in message, message
    assert not (tmp_path / "PWNED").exists()
    if isinstance(expected, Refused):
        assert error is not None, f"loaded: {messages}"
        assert any(part.endswith(expected.file) for part in str(error).split(": ")), str(error)
        assert re.search(expected.pattern, str(error)), str(error)
        return
    assert error is None, str(error)
    assert [image.name for image in dataset.images] == list(expected.images)
    for name, class_ids in expected.classes.items():
        assert labels[name].class_ids.tolist() == class_ids
    if expected.names is not None:
        assert dataset.names == expected.names
    warned = [m for w, m in zip(caught, messages) if issubclass(w.category, (LabelWarning, SkippedImageWarning))]
    if expected.warns:
        assert any(re.search(expected.warns, m) for m in warned), warned
    else:
        assert not warned, warned


def test_a_label_read_outside_the_root_when_allowed_still_shows_20_characters_at_most(tmp_path, monkeypatch):
    """QUANTLAB_ALLOW_OUTSIDE_ROOT=1 follows the symlink; the warning quotes the first field, cut short."""
    scene = Scene(tmp_path)
    data = _label_to_secret(scene)
    monkeypatch.setenv("QUANTLAB_ALLOW_OUTSIDE_ROOT", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _evaluate_labels(data)
    messages = [str(w.message) for w in caught]
    assert any(re.search(r"a.txt:1: field 1 is not a number: 'aws_secret_access_ke'\.\.\.", m) for m in messages)
    assert not any(SECRET_TAIL in m for m in messages), messages  # '[default]', the next line, is 9 characters


def test_allowed_outside_the_root_an_absolute_split_elsewhere_is_read(tmp_path, monkeypatch):
    scene = Scene(tmp_path)
    monkeypatch.setenv("QUANTLAB_ALLOW_OUTSIDE_ROOT", "1")
    assert [p.name for p in load_dataset(scene.yaml(val=str(scene.elsewhere))).images] == ["x.png"]


@pytest.mark.parametrize(("build", "fragment"), [
    (_billion_laughs, "a YAML alias"),
    (lambda s: s.yaml(nc=80), "'nc' is 80"),
    (lambda s: s.link("val.txt", s.secret) and s.yaml(val="val.txt"), "leads outside the dataset root"),
], ids=["billion-laughs", "nc-disagrees", "list-symlinked-to-a-secret"])
def test_through_the_cli_a_refused_data_yaml_is_one_line_and_exit_2(tmp_path, demo_model, capsys, build, fragment):
    data = build(Scene(tmp_path))
    assert main(["eval", str(demo_model), "--data", str(data)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err and SECRET_TAIL not in err
    errors = [line for line in err.splitlines() if line.startswith("quantlab: error:")]
    assert len(errors) == 1 and str(data) in errors[0] and fragment in errors[0], err


def test_through_the_cli_demo_data_from_the_repository_root(tmp_path, monkeypatch, demo_model, capsys):
    """Was: `--data data/shapes/data.yaml` looked for data/shapes/data/shapes/images/val; also a label
    symlinked to a secret is skipped with one warning and the rest evaluated."""
    data = write_dataset(tmp_path / "data" / "shapes", splits=("val",), sizes={"val": 3})
    label = data.parent / "labels" / "val" / "val_00000.txt"
    label.unlink()
    label.symlink_to(Scene(tmp_path / "outside").secret)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # shown by main() as `quantlab: warning:` lines, not raised
        assert main(["eval", str(demo_model), "--data", "data/shapes/data.yaml"]) == ExitCode.OK
    captured = capsys.readouterr()
    assert "map50_95: " in captured.out and SECRET_TAIL not in captured.out + captured.err
    assert "val_00000.jpg: its label file" in captured.err and "is a symlink leading outside" in captured.err


def test_an_unreadable_image_is_named_escaped_on_one_line(tmp_path):
    """Its name came from a list line: a terminal escape in it is shown as text, not sent to the terminal."""
    from quantlab.images import iter_images

    with pytest.warns(SkippedImageWarning) as got:
        assert list(iter_images([tmp_path / "\x1b[2Jmissing\n.png"])) == []
    assert "\\x1b[2Jmissing\\x0a.png: cannot be read" in str(got[0].message) and "\x1b" not in str(got[0].message)


@pytest.mark.parametrize("root", ["/", "../..", ""], ids=["filesystem-root", "the-home-folder", "unpacked-into-home"])
def test_a_dataset_root_cannot_be_the_home_folder_or_above(tmp_path, monkeypatch, root):
    """Was: `path: /` made a label symlinked to ~/.git-credentials part of the dataset, and its first 20
    characters were printed in a warning."""
    monkeypatch.delenv("QUANTLAB_ALLOW_OUTSIDE_ROOT", raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    data = home if root == "" else home / "Downloads" / "ds"
    (data / "images" / "val").mkdir(parents=True)
    (data / "labels" / "val").mkdir(parents=True)
    secret = home / ".git-credentials"
    secret.write_text("https://bob:ghp_SECRET@example.com\n")
    (data / "images" / "val" / "x.png").write_bytes(b"")  # load_dataset reads no pixels
    (data / "labels" / "val" / "x.txt").symlink_to(secret)
    val = str(data / "images" / "val") if root == "/" else "images/val" if root == "" else "Downloads/ds/images/val"
    (data / "data.yaml").write_text((f"path: {root}\n" if root else "") + f"val: {val}\nnames: [a]\n")
    with pytest.raises(DatasetError, match="the home folder or a folder above it"):
        load_dataset(data / "data.yaml")
    monkeypatch.setenv("QUANTLAB_ALLOW_OUTSIDE_ROOT", "1")  # the user's own choice
    assert load_dataset(data / "data.yaml").images == (data / "images" / "val" / "x.png",)


def test_a_label_file_of_more_objects_than_any_image_holds_is_refused(tmp_path):
    """Was: 611,539 valid lines (under the 16 MiB cap) took 6 minutes and 763 MB to evaluate 2 images."""
    from quantlab.datasets import MAX_LABEL_LINES

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    image = tmp_path / "images" / "x.png"
    image.write_bytes(b"")
    (tmp_path / "labels" / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n" * (MAX_LABEL_LINES + 1))
    with pytest.raises(DatasetError, match=f"more than {MAX_LABEL_LINES:,} objects for one image"):
        read_labels(image, (100, 100), 1)
    (tmp_path / "labels" / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n" * MAX_LABEL_LINES)
    assert len(read_labels(image, (100, 100), 1).boxes) == MAX_LABEL_LINES
