"""Where and how quantlab writes: output checks made before any work, atomic file writes
(temporary file beside the destination, then rename), staged folders swapped in whole, hashing.

Every writer goes through here, so three promises hold for every command: a destination is
never one of the command's inputs; a folder quantlab fills is new, empty or its own (marked);
and a failed or interrupted command leaves every previous output exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from quantlab import __version__
from quantlab.errors import InputError, OutputError
from quantlab.jsonio import read_json

MARKER = ".quantlab-output"  # written into every folder quantlab fills; such a folder may be replaced


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(path))


def _open_temp_beside(destination: Path) -> tuple[int, str]:
    folder = destination.parent
    if not folder.is_dir():
        raise OutputError(f"{destination}: output folder {folder} does not exist")
    try:
        return tempfile.mkstemp(prefix=f".{destination.stem[:40]}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"{destination}: cannot write to {folder} ({exc.strerror or exc})") from exc


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf on Windows
        return 255


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: same inode (symlinks, hard links) or the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` (as written or resolved) lies inside `folder` (as written or resolved)."""
    candidates = {_absolute(path), path.resolve()}
    folders = {_absolute(folder), folder.resolve()}
    return any(c == f or f in c.parents for c in candidates for f in folders)


def refuse_overwriting_inputs(inputs: Iterable[str | Path], files: Iterable[str | Path] = (),
                              folders: Iterable[str | Path] = ()) -> None:
    """Raise OutputError if an output file is an input, or an output folder (replaced whole) holds one."""
    inputs = [Path(p) for p in inputs if p]
    for output in (Path(p) for p in files if p):
        for source in inputs:
            if source.exists() and output.exists() and same_file(source, output):
                raise OutputError(f"{output}: this output is the input {source}; choose another output path")
    for folder in (Path(p) for p in folders if p):
        for source in inputs:
            if _inside(source, folder):
                raise OutputError(f"{folder}: this output folder holds the input {source} and would be "
                                  "replaced; choose another output folder")


def _check_parents_are_folders(path: Path) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{path}: {parent} is a file, not a folder")
            return


def refuse_same_outputs(*paths: str | Path) -> None:
    """Raise OutputError when two outputs of one command are the same path (one would replace the other)."""
    seen: dict[Path, Path] = {}
    for path in (Path(p) for p in paths if p):
        key = _absolute(path)
        if key in seen:
            raise OutputError(f"{path}: given for two outputs of this command; give each its own path")
        seen[key] = path


def check_output_file(destination: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Fail before any work if `destination` cannot be written as a file; create missing parents."""
    destination = _absolute(destination)
    refuse_overwriting_inputs(inputs, files=[destination])
    _check_parents_are_folders(destination)
    if destination.is_dir():
        raise OutputError(f"{destination}: is a directory; give a file path")
    if destination.exists() and not destination.is_file():  # a device, a pipe, /dev/stdout: never renamed over
        raise OutputError(f"{destination}: not a regular file (a device, pipe or socket); give a file path")
    if len(os.fsencode(destination.name)) > _name_max(destination.parent if destination.parent.is_dir() else
                                                       Path(destination.anchor)):
        raise OutputError(f"{destination}: file name too long for this file system")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{destination}: cannot create its folder ({exc.strerror or exc})") from exc
    fd, tmp = _open_temp_beside(destination)
    os.close(fd)
    os.unlink(tmp)
    return destination


def atomic_write_bytes(destination: Path, data: bytes) -> None:
    """Write `data` at `destination` (mode from the umask), or leave whatever was there untouched."""
    destination = Path(destination)
    fd, tmp = _open_temp_beside(destination)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: a serving user could not read it
        os.replace(tmp, destination)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"{destination}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _written_by_quantlab(folder: Path) -> set[str] | None:
    """The files the marker of `folder` lists (relative POSIX paths), or None when it has no marker."""
    marker = folder / MARKER
    if not marker.is_file():
        return None
    try:
        listed = read_json(marker, "quantlab's output marker")
    except InputError:  # a damaged marker vouches for nothing: every file counts as added
        return set()
    files = listed.get("files") if isinstance(listed, dict) else None
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def _files_below(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()} - {MARKER}


def check_output_folder(folder: str | Path) -> Path:
    """A folder quantlab may fill: absent, empty, or marked as quantlab's own and holding only what
    it wrote (its marker lists the files); else OutputError. A symlinked folder is followed."""
    folder = _absolute(folder)
    if folder.is_symlink():
        folder = folder.resolve()
    _check_parents_are_folders(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder; give a folder path")
    cwd = Path.cwd().resolve()
    if folder.resolve() == cwd or folder.resolve() in cwd.parents:
        raise OutputError(f"{folder}: is the current folder (or holds it) and would be replaced; "
                          "give a sub-folder such as ./quantlab-out")
    if folder.is_dir() and any(folder.iterdir()):
        written = _written_by_quantlab(folder)
        if written is None:
            raise OutputError(f"{folder}: this folder holds files quantlab did not write; "
                              "give a new or empty folder (quantlab replaces only folders it made)")
        added = sorted(_files_below(folder) - written)
        if added:
            raise OutputError(f"{folder}: holds {len(added)} file(s) quantlab did not write "
                              f"({', '.join(added[:3])}{', ...' if len(added) > 3 else ''}) and would delete them "
                              "when it replaces the folder; move them out or give another folder")
    if len(os.fsencode(folder.name)) + 24 > _name_max(folder.parent if folder.parent.is_dir() else
                                                      Path(folder.anchor)):
        raise OutputError(f"{folder}: folder name too long for this file system")
    return folder


@contextlib.contextmanager
def staged_folder(destination: str | Path, command: str) -> Iterator[Path]:
    """Yield a fresh sibling staging folder; on success it replaces `destination` whole.

    Until the swap the previous folder stays untouched; on any error or interrupt the staging
    folder is removed and the error propagates. The folder gets a marker naming `command` and
    listing the files written, so a later command can tell them from files a user added.
    """
    destination = check_output_folder(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{destination.name}.staging-", dir=destination.parent))
    except OSError as exc:
        raise OutputError(f"{destination}: cannot create a folder beside it ({exc.strerror or exc})") from exc
    try:
        yield stage
        marker = {"command": command, "quantlab": __version__, "files": sorted(_files_below(stage))}
        (stage / MARKER).write_text(json.dumps(marker) + "\n")
        os.chmod(stage, 0o777 & ~_umask())
        _swap_in(stage, destination)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _swap_in(stage: Path, destination: Path) -> None:
    """Rename `stage` to `destination`; the previous folder is removed only after that."""
    if not destination.exists():
        os.rename(stage, destination)
        return
    previous = Path(tempfile.mkdtemp(prefix=f".{destination.name}.previous-", dir=destination.parent))
    try:
        os.rename(destination, previous / "old")
    except OSError as exc:  # the current directory or a mount point: fill it in place if empty
        previous.rmdir()
        if any(destination.iterdir()):
            raise OutputError(f"{destination}: cannot be replaced ({exc.strerror or exc}); "
                              "give another output folder") from exc
        for entry in stage.iterdir():
            os.rename(entry, destination / entry.name)
        stage.rmdir()
        return
    try:
        os.rename(stage, destination)
    except BaseException:
        os.rename(previous / "old", destination)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
