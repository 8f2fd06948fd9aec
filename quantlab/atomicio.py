"""Where and how quantlab writes: output checks made before any work, atomic file writes
(temporary file beside the destination, then rename), staged folders swapped in whole, hashing.

Every writer goes through here, so these promises hold for every command: a destination is
never one of the command's inputs; a folder quantlab fills is new, empty or its own (marked), and
a file a user adds to it is never deleted; one quantlab writes a folder at a time; a failed,
interrupted or killed command leaves every previous output exactly as it was (what a killed one
left is cleared by the next); and staging lives on the destination's own file system, so a
mount point (Docker's `-v $PWD/out:/out`) is filled like any folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from quantlab import __version__
from quantlab.errors import InputError, OutputError, OutputWarning
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


def _resolved(path: Path) -> Path:
    """`path` with its symlinks followed; a symlink loop is left as it is (Path.resolve raises there)."""
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` (as written or resolved) lies inside `folder` (as written or resolved)."""
    candidates = {_absolute(path), _resolved(path)}
    folders = {_absolute(folder), _resolved(folder)}
    return any(c == f or f in c.parents for c in candidates for f in folders)


def refuse_overwriting_inputs(inputs: Iterable[str | Path], files: Iterable[str | Path] = (),
                              folders: Iterable[str | Path] = ()) -> None:
    """Raise OutputError if an output file is an input, an output folder (replaced whole) holds one, or an
    output of either kind lies in an input folder (among images quantlab reads, a later run would read it)."""
    inputs = [Path(p) for p in inputs if p]
    files, folders = [Path(p) for p in files if p], [Path(p) for p in folders if p]
    for source in (s for s in inputs if s.is_dir()):
        for output in (*files, *folders):
            if _inside(output, source):
                raise OutputError(f"{output}: lies in the input folder {source}, among the files quantlab reads; "
                                  "choose an output path outside it")
    for output in files:
        for source in inputs:
            if source.exists() and output.exists() and same_file(source, output):
                raise OutputError(f"{output}: this output is the input {source}; choose another output path")
    for folder in folders:
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


# What quantlab keeps inside a destination it cannot replace whole (a mount point): never a user's file
_WORK_INSIDE = re.compile(r"\.quantlab-lock|\.quantlab-(staging|previous)-[a-z0-9_]{8}")


def _entries(folder: Path) -> list[str]:
    """The names at the top of `folder`, less quantlab's own working folders and lock."""
    return sorted(name for name in os.listdir(folder) if not _WORK_INSIDE.fullmatch(name))


def _files_below(folder: Path) -> set[str]:
    """Every file and symlink below `folder` (relative POSIX paths), less the marker and quantlab's work."""
    found: set[str] = set()
    for name in _entries(folder):
        top = folder / name
        below = top.rglob("*") if top.is_dir() and not top.is_symlink() else ()
        found |= {p.relative_to(folder).as_posix() for p in [top, *below] if p.is_symlink() or not p.is_dir()}
    return found - {MARKER}


def _refuse_files_quantlab_did_not_write(folder: Path) -> None:
    """OutputError naming the files in `folder` its marker does not list: a user's, never to be deleted."""
    if not _entries(folder):
        return
    written = _written_by_quantlab(folder)
    if written is None:
        raise OutputError(f"{folder}: this folder holds files quantlab did not write; "
                          "give a new or empty folder (quantlab replaces only folders it made)")
    added = sorted(_files_below(folder) - written)
    if added:
        raise OutputError(f"{folder}: holds {len(added)} file(s) quantlab did not write "
                          f"({', '.join(added[:3])}{', ...' if len(added) > 3 else ''}) and would delete them "
                          "when it replaces the folder; move them out or give another folder")


def _check_folder_content(folder: Path) -> None:
    """OutputError when `folder` holds a file quantlab did not write (or cannot be read)."""
    if folder.is_dir():
        try:
            _refuse_files_quantlab_did_not_write(folder)
        except PermissionError as exc:
            raise OutputError(f"{folder}: cannot be read ({exc.strerror}); give a folder you can write") from exc


def _check_folder_path(folder: str | Path) -> Path:
    """The absolute path of a folder quantlab may create or replace (its symlink followed), or OutputError."""
    folder = _absolute(folder)
    if folder.is_symlink():
        if _resolved(folder).is_symlink():  # realpath stops where a loop begins
            raise OutputError(f"{folder}: a symlink loop, not a folder; give a folder path")
        folder = _resolved(folder)
    _check_parents_are_folders(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder; give a folder path")
    cwd = _resolved(Path.cwd())
    if _resolved(folder) == cwd or _resolved(folder) in cwd.parents:
        raise OutputError(f"{folder}: is the current folder (or holds it) and would be replaced; "
                          "give a sub-folder such as ./quantlab-out")
    if len(os.fsencode(folder.name)) + 24 > _name_max(folder.parent if folder.parent.is_dir() else
                                                      Path(folder.anchor)):
        raise OutputError(f"{folder}: folder name too long for this file system")
    return folder


# Errors only writing causes: raised inside a staged or temp folder, they are about where it lives
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _cannot_write_in(folder: Path, exc: OSError, fix: str) -> OutputError:
    """One line naming the folder and the cause: "no space left on device in /tmp/quantlab-x; <fix>"."""
    cause = (exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)).lower()
    return OutputError(f"{cause} in {folder}; {fix}")


@contextlib.contextmanager
def temp_folder(prefix: str) -> Iterator[Path]:
    """A new private folder in the temp folder (TMPDIR), removed on exit, interrupts included. A temp
    folder that cannot be created, or fills up, is an OutputError naming it, not an OSError."""
    fix = "free space there or set TMPDIR to another folder"
    try:
        path = Path(tempfile.mkdtemp(prefix=prefix))
    except OSError as exc:
        raise _cannot_write_in(Path(tempfile.gettempdir()), exc, fix) from exc
    try:
        yield path
    except OSError as exc:
        if exc.errno not in _NO_ROOM:
            raise
        raise _cannot_write_in(Path(exc.filename).parent if exc.filename else path, exc, fix) from exc
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class _Workplace:
    """Where the staging folders and the lock of one output folder live, on its own file system.

    Beside it (`.NAME.staging-XXXXXXXX`, lock `.NAME.quantlab-lock`) so the result is swapped in whole
    with one rename; inside it (`.quantlab-staging-XXXXXXXX`, lock `.quantlab-lock`) when it is a
    mount point (Docker's `-v $PWD/out:/out`), whose parent is another file system or read-only.
    """

    destination: Path
    folder: Path
    prefix: str
    lock_name: str

    @classmethod
    def of(cls, destination: Path) -> _Workplace:
        parent = destination.parent
        if destination.is_dir() and (os.path.ismount(destination) or not os.access(parent, os.W_OK | os.X_OK)):
            return cls(destination, destination, ".quantlab-", ".quantlab-lock")
        return cls(destination, parent, f".{destination.name}.", f".{destination.name}.quantlab-lock")

    @property
    def inside(self) -> bool:
        return self.folder == self.destination

    def leftovers(self) -> Iterator[tuple[str, Path]]:
        """(staging or previous, path) of every working folder of this destination, beside or inside it."""
        places = [(self.folder, self.prefix)]
        if not self.inside and self.destination.is_dir():  # a copy put there when the swap met another device
            places.append((self.destination, ".quantlab-"))
        for folder, prefix in places:
            if not folder.is_dir():
                continue
            pattern = re.compile(re.escape(prefix) + r"(staging|previous)-[a-z0-9_]{8}")
            for name in sorted(os.listdir(folder)):
                found = pattern.fullmatch(name)
                if found and (folder / name).is_dir() and not (folder / name).is_symlink():
                    yield found.group(1), folder / name


@contextlib.contextmanager
def _writer_lock(place: _Workplace) -> Iterator[None]:
    """Hold the output folder's lock, or refuse at once: a run takes minutes, so waiting would look hung.

    The lock file stays (empty) after release: deleting it would let a third process lock a new file
    while a second still held the old one.
    """
    lock_path = place.folder / place.lock_name
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise OutputError(f"{place.destination}: another quantlab is writing this folder now (it holds "
                          f"{lock_path}); wait for it to finish or give another output folder") from None
    except OSError as exc:
        raise _cannot_write_in(place.folder, exc, "give an output folder you can write") from exc
    try:
        yield
    finally:
        lock.release()


def _reclaim_leftovers(place: _Workplace) -> None:
    """Clear what a killed quantlab left for this destination, with one warning each. The caller holds
    the lock, which every writer holds for its whole run, so the owner of every leftover is gone."""
    leftovers = list(place.leftovers())
    for kind, path in leftovers:  # previous folders first: one may need its staging folder to be put back
        if kind == "previous":
            _reclaim_previous(path, place, [p for k, p in leftovers if k == "staging"])
    for kind, path in leftovers:
        if kind == "staging" and path.exists():
            shutil.rmtree(path, ignore_errors=True)
            warnings.warn(f"removed {path}, a staging folder an interrupted quantlab left", OutputWarning,
                          stacklevel=2)


def _reclaim_previous(previous: Path, place: _Workplace, stagings: list[Path]) -> None:
    """A quantlab was killed while swapping: put the previous output back if the swap broke off midway."""
    destination = place.destination
    beside = previous.parent != destination  # beside, the previous folder was moved whole into previous/old
    whole = (destination / MARKER).exists()  # the new marker goes in last: the swap had finished
    said = None
    if not any(previous.iterdir()):
        pass  # made just before a swap that never began
    elif beside and not destination.exists():
        os.rename(previous / "old", destination)
        said = f"restored {destination} from {previous}, where an interrupted quantlab had moved it"
    elif beside and not whole:
        raise OutputError(f"{destination}: an interrupted quantlab left its previous output in {previous}, "
                          f"and {destination} is not quantlab's; keep what you want and remove {previous}")
    elif not whole:
        _undo_fill_in_place(previous, destination, stagings)
        said = f"restored the files of {destination} from {previous}, where an interrupted quantlab had moved them"
    else:
        said = f"removed {previous}, an output an interrupted quantlab had already replaced"
    shutil.rmtree(previous, ignore_errors=True)
    if said:
        warnings.warn(said, OutputWarning, stacklevel=2)


def _undo_fill_in_place(previous: Path, destination: Path, stagings: list[Path]) -> None:
    """Move the new files an interrupted `_fill_in_place` had moved in back to their staging folder
    (its marker, moved last, still names them), then the previous files back into `destination`."""
    for stage in stagings:
        listed = _written_by_quantlab(stage) or set()
        for name in {f.split("/")[0] for f in listed}:
            if (destination / name).exists() and not (stage / name).exists():
                os.rename(destination / name, stage / name)
    clashing = [name for name in _entries(previous) if os.path.lexists(destination / name)]
    if clashing:
        raise OutputError(f"{destination}: an interrupted quantlab left it half-replaced, and {clashing[0]} is "
                          f"both there and in {previous}; keep the one you want and remove {previous}")
    for name in sorted(_entries(previous), key=lambda n: n == MARKER):  # the marker last: whole again
        os.rename(previous / name, destination / name)


@contextlib.contextmanager
def staged_folder(destination: str | Path, command: str) -> Iterator[Path]:
    """Yield a fresh staging folder on the destination's file system; on success it replaces
    `destination` whole.

    One writer per destination (a lock, held throughout; a second is refused at once); folders a
    killed writer left are cleared first. Until the swap the previous folder stays untouched; on any
    error or interrupt the staging folder is removed and the error propagates. The folder gets a
    marker naming `command` and listing the files written, so a later command can tell them from
    files a user added; a file added while this one worked is named, the command refused.
    """
    destination = _check_folder_path(destination)
    place = _Workplace.of(destination)
    if not any(place.leftovers()):  # refused before the lock file is made; else after the leftovers are cleared
        _check_folder_content(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{destination}: cannot create its folder ({exc.strerror or exc})") from exc
    with _writer_lock(place):
        _reclaim_leftovers(place)
        _check_folder_content(destination)  # a file saved there since, or a previous folder put back
        try:
            stage = Path(tempfile.mkdtemp(prefix=f"{place.prefix}staging-", dir=place.folder))
        except OSError as exc:
            raise _cannot_write_in(place.folder, exc, "give an output folder you can write") from exc
        try:
            yield stage
            marker = {"command": command, "quantlab": __version__, "files": sorted(_files_below(stage))}
            (stage / MARKER).write_text(json.dumps(marker) + "\n")
            os.chmod(stage, 0o777 & ~_umask())
            _swap_in(stage, place)
        except OSError as exc:
            shutil.rmtree(stage, ignore_errors=True)
            if exc.errno not in _NO_ROOM:
                raise
            where = Path(exc.filename).parent if exc.filename and stage not in Path(exc.filename).parents else \
                destination
            raise _cannot_write_in(where, exc, "free space there or give another output folder") from exc
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise


def _swap_in(stage: Path, place: _Workplace) -> None:
    """Put the complete `stage` in place of the destination: with one rename when both lie on one
    file system, else by filling it file by file. A file a user saved there meanwhile is refused."""
    destination = place.destination
    if destination.is_dir():
        _refuse_files_quantlab_did_not_write(destination)
    if place.inside:
        _fill_in_place(stage, destination)
        return
    try:
        _swap_whole(stage, place)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EBUSY):
            raise
        _fill_by_copy(stage, destination)  # a mount point os.path.ismount missed (a bind mount), another device


def _swap_whole(stage: Path, place: _Workplace) -> None:
    """Rename `stage` to the destination; the previous folder is removed only after that."""
    destination = place.destination
    if not destination.exists():
        os.rename(stage, destination)
        return
    previous = Path(tempfile.mkdtemp(prefix=f"{place.prefix}previous-", dir=place.folder))
    try:
        os.rename(destination, previous / "old")
    except OSError:
        previous.rmdir()
        raise
    try:
        os.rename(stage, destination)
    except BaseException:
        os.rename(previous / "old", destination)
        previous.rmdir()
        raise
    shutil.rmtree(previous, ignore_errors=True)


def _fill_by_copy(stage: Path, destination: Path) -> None:
    """Copy `stage` into a staging folder inside `destination` (its own file system), then fill it
    from there; a copy that fails (a full disk) is removed and the destination left as it was."""
    created = not destination.exists()
    destination.mkdir(exist_ok=True)
    inner = Path(tempfile.mkdtemp(prefix=".quantlab-staging-", dir=destination))
    try:
        try:
            shutil.copytree(stage, inner, symlinks=True, dirs_exist_ok=True)
        except shutil.Error as exc:  # copytree gathers the failures of every file; the first tells
            raise OutputError(f"{destination}: cannot copy the result there ({exc.args[0][0][2]})") from exc
        _fill_in_place(inner, destination)
    except BaseException:
        shutil.rmtree(inner, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                destination.rmdir()
        raise
    shutil.rmtree(stage, ignore_errors=True)


def _fill_in_place(stage: Path, destination: Path) -> None:
    """For a destination that cannot be renamed (a mount point): move its previous files aside into a
    folder inside it (the marker first), then the new ones in from `stage` (the marker last). Every
    move is a rename on one file system; on a failure every file goes back where it was."""
    previous = Path(tempfile.mkdtemp(prefix=".quantlab-previous-", dir=destination))
    moved: list[tuple[Path, Path]] = []
    try:
        for name in sorted(_entries(destination), key=lambda n: n != MARKER):
            os.rename(destination / name, previous / name)
            moved.append((destination / name, previous / name))
        if _entries(destination):  # saved there since the check: keep it, and the previous files
            raise OutputError(f"{destination / _entries(destination)[0]}: saved in the output folder while "
                              "quantlab wrote it; the folder was left as it was")
        for name in sorted(os.listdir(stage), key=lambda n: n == MARKER):
            os.rename(stage / name, destination / name)
            moved.append((stage / name, destination / name))
    except BaseException:
        for source, target in reversed(moved):
            os.rename(target, source)
        shutil.rmtree(previous, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)
    stage.rmdir()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
