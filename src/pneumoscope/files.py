"""Atomic file writes: a temporary file beside the target, flushed and fsync'ed, then moved into place with
``os.replace`` (atomic on POSIX and Windows), so that a reader sees the old complete file or the new one, never a
torn one, even when the writer is killed. Every result file (manifests, configs, metrics, reports, checkpoints,
models, caches, exports, downloads) is written this way.

The temporary file is created like any new file (``open(..., 0o666)``), so the result gets the permissions the
user's umask gives (0644 under the usual umask 022), not the private 0600 of ``tempfile.mkstemp``. Its name,
``.<target name>.<random>.tmp`` (optionally followed by a suffix a writer needs, e.g. ``.onnx``), is hidden and
never mistaken for a result; ``remove_temporaries`` deletes those that a killed writer left behind. ``read_yaml`` is
the one reader of YAML files (configs, saved run configs).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pneumoscope import faults

TEMP_MARK = ".tmp"
_TEMPORARY_NAME = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temporary(path: Path, suffix: str = "") -> tuple[int, Path]:
    """A new, empty temporary file beside ``path`` (mode from the umask): its descriptor and path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_MARK}{suffix}")
        try:
            return os.open(tmp, _CREATE_FLAGS, 0o666), tmp
        except FileExistsError:  # 32 random bits: another writer's name, try the next one
            continue


def _move_into_place(tmp: Path, path: Path) -> None:
    faults.reached(f"write:{path.name}")
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it into place atomically."""
    path = Path(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        _move_into_place(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """For writers that take a file name: yields a temporary path beside ``path`` (an empty file, ending in
    ``suffix`` where the writer needs one) that replaces ``path`` atomically when the block succeeds, and is
    removed when it fails."""
    path = Path(path)
    fd, tmp = _create_temporary(path, suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        _move_into_place(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def is_temporary(path: str | Path) -> bool:
    """True for the name of an atomic write's temporary file (``.<name>.<random>.tmp[.<suffix>]``)."""
    return bool(_TEMPORARY_NAME.match(Path(path).name))


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes left in ``folder`` (not in its subfolders); returns
    them. Call it only on a folder no other process is writing into (e.g. a run folder when its run starts)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        if is_temporary(entry) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return sorted(removed)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file (an empty file is an empty mapping)."""
    import yaml

    from pneumoscope.errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found.", path=path, fix="give the path of an existing YAML file.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(error, 'problem', error)}.", path=path,
                          fix="correct the YAML syntax.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("a config file must hold a mapping of sections (data:, model:, trainer: ...).", path=path,
                          fix="see `pneumoscope train --help` and docs for the keys.")
    return data


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (weights and exports are identified by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
