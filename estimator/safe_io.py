"""File input and output that never loses data and never hangs: atomic writes, regular-file checks, named decode
errors, and spreadsheet-safe CSV cells.

An atomic write goes to a temporary file beside the target (same directory, so the same file system), is flushed
and ``fsync``-ed, then ``os.replace``-d over the target and the directory is ``fsync``-ed: a crash at any instant
leaves either the old file or the new one, never a mix (POSIX rename(2) is atomic within one file system). Two
concurrent writers each replace the whole file; the last rename wins, and lines never interleave.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: characters that make a spreadsheet treat a cell as a formula (OWASP "CSV injection"); tab and CR too
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class UnsafeFileError(ValueError):
    """An input or output path that cannot be used safely; the message names the path and the problem."""


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some file systems do not open directories; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_output_path(path: str | Path) -> Path:
    """Refuse an output path that is a directory or an existing non-regular file (FIFO, device).

    Raises:
        UnsafeFileError: naming the path and what it is.
    """
    path = Path(path)
    if path.is_dir():
        raise UnsafeFileError(f"{path}: is a directory, not a file to write")
    if path.exists() and not path.is_file():
        raise UnsafeFileError(f"{path}: is not a regular file (a FIFO or device); refusing to write to it")
    return path


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit fsync it and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is untouched. The new file keeps the old file's
    permission bits (or 0o644 for a new file, less the umask).

    Raises:
        UnsafeFileError: ``path`` is a directory or a non-regular file.
        OSError: the directory is not writable (the message names it).
    """
    path = check_output_path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        try:
            old_mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            old_mode = 0o644 & ~umask
        os.fchmod(fd, old_mode)
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None,
                       newline="" if "b" not in mode else None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as handle:
        handle.write(text)


def check_input_file(path: str | Path) -> Path:
    """Refuse an input that is missing, a directory, or not a regular file (a FIFO would block forever).

    Raises:
        UnsafeFileError: naming the path and what is wrong with it.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise UnsafeFileError(f"{path}: no such file") from exc
    except OSError as exc:
        raise UnsafeFileError(f"{path}: cannot be read ({exc.strerror})") from exc
    if stat.S_ISDIR(mode):
        raise UnsafeFileError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise UnsafeFileError(f"{path}: is not a regular file (a FIFO, socket or device); give a file")
    return path


def read_text_checked(path: str | Path, encoding: str = "utf-8-sig") -> str:
    """Read a regular text file; a decode error names the file and the byte offset.

    Raises:
        UnsafeFileError: not a regular file, unreadable, or not text in ``encoding`` (a BOM is accepted).
    """
    path = check_input_file(path)
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise UnsafeFileError(f"{path}: not UTF-8 text (undecodable byte at offset {exc.start}); "
                              f"is it a binary file?") from exc
    except OSError as exc:
        raise UnsafeFileError(f"{path}: cannot be read ({exc.strerror})") from exc


def escape_formula(value):
    """Prefix a text cell that a spreadsheet would run as a formula with ``'`` (numbers pass unchanged)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
