"""Every JSON quantlab reads goes through `read_json` / `parse_json`: bounded, strict, one-line errors.

Bounds and decisions, and why:

* Size: at most MAX_JSON_BYTES (32 MiB), checked on the open file before reading and again while
  reading (a file that grows). A pytest-benchmark JSON is a few kB per benchmark (a few MB with
  --benchmark-save-data). Objects and lists: at most MAX_JSON_CONTAINERS (a million; the plugin
  writes about ten per benchmark), counted before parsing. Measured worst cases within both bounds
  (32 MiB of `0.5,`, of `0,` or of `"a",`; a million `{}`): at most 5 s and 0.4 GB on a busy 2-core
  machine, where 64 MiB of `[],` alone had taken 48 s and 3.2 GB.
* Only regular files: a FIFO, a device (/dev/zero) or a socket is refused without reading, and is
  opened non-blocking, so a FIFO with no writer never hangs the command.
* Nesting: at most MAX_JSON_DEPTH (64) levels (pytest-benchmark writes 6); a deeper file is refused
  in one line, never a RecursionError, and nothing downstream recurses into a hostile structure.
* UTF-8 only (a leading BOM is dropped), as JSON requires; other bytes are refused, naming the offset.
* A key given twice in one object is refused: parsers disagree on which copy wins, and a gate must
  not read a value another tool reads differently.
* NaN and Infinity literals are read (pytest-benchmark writes them for some statistics it cannot
  compute), as are numbers too big for a float (1e999 is Infinity; integers are exact up to Python's
  4300 digits, a longer one is refused); each reader then requires the numbers it uses to be finite.

`json_bytes` is the writing side: UTF-8 JSON whose strings have any undecodable file-name bytes
shown as `\\xNN` (quantlab.textsafe.decodable), so every file quantlab writes is valid UTF-8.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from quantlab.errors import InputError
from quantlab.textsafe import decodable, shorten

MAX_JSON_BYTES = 32 * 2**20
MAX_JSON_DEPTH = 64
MAX_JSON_CONTAINERS = 1_000_000


def read_json(path: str | Path, what: str = "JSON file") -> object:
    """The JSON value in the file at `path`; InputError naming the file (and `what` it should be) otherwise."""
    path = Path(path)
    return parse_json(_read_bounded(path, what), f"{path}", what)


def parse_json(raw: bytes | str, source: str, what: str = "JSON") -> object:
    """The JSON value in `raw`, within the bounds above; InputError naming `source` otherwise."""
    if isinstance(raw, bytes):
        raw = _utf8(raw, source)
    # an upper bound (braces in strings count too), found at C speed before any object is built
    if raw.count("{") + raw.count("[") > MAX_JSON_CONTAINERS:
        raise InputError(f"{source}: holds over {MAX_JSON_CONTAINERS:,} objects and lists; expected {what}")
    try:
        value = json.loads(raw, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                         f"expected {what}") from None
    except RecursionError:  # the parser's own stack ran out: deeper than any bound
        raise InputError(f"{source}: nested deeper than {MAX_JSON_DEPTH} levels; expected {what}") from None
    except _DuplicateKey as exc:
        raise InputError(f"{source}: the key {exc} appears twice in one object; expected {what}") from None
    except ValueError as exc:  # an integer past Python's 4300 digits
        raise InputError(f"{source}: not readable as JSON ({shorten(exc, 80)}); expected {what}") from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise InputError(f"{source}: nested deeper than {MAX_JSON_DEPTH} levels; expected {what}")
    return value


def json_bytes(payload: object) -> bytes:
    """`payload` as indented UTF-8 JSON ending in a newline, undecodable file-name bytes shown as `\\xNN`."""
    return (json.dumps(_decodable_strings(payload), indent=2) + "\n").encode("utf-8")


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    mapping = dict(pairs)
    if len(mapping) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(f"'{shorten(twice, 40)}'")
    return mapping


def _deeper_than(value: object, limit: int) -> bool:
    """Whether `value` nests containers more than `limit` deep; iterative, so any depth is safe."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _read_bounded(path: Path, what: str) -> bytes:
    """The bytes of a regular file of at most MAX_JSON_BYTES; never blocks on a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputError(f"{path}: not found; expected {what}") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; expected {what}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc}); expected {what}") from None
    try:
        _check_regular_within_bound(os.fstat(fd), path, what)
        data = _read_at_most(fd, MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc}); expected {what}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_JSON_BYTES:
        raise InputError(f"{path}: grew past the {MAX_JSON_BYTES >> 20} MiB quantlab reads; expected {what}")
    return data


def _check_regular_within_bound(info: os.stat_result, path: Path, what: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path}: is a folder; expected {what}")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: not a regular file (a pipe, device or socket); expected {what}")
    if info.st_size > MAX_JSON_BYTES:
        raise InputError(f"{path}: {info.st_size / 2**20:.0f} MiB, larger than the {MAX_JSON_BYTES >> 20} MiB "
                         f"quantlab reads; expected {what}")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _utf8(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                         "JSON must be UTF-8") from None


def _decodable_strings(value: object) -> object:
    if isinstance(value, str):
        return decodable(value)
    if isinstance(value, dict):
        return {decodable(k) if isinstance(k, str) else k: _decodable_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_decodable_strings(v) for v in value]
    return value
