"""Writing a file whole or not at all: a temporary file beside the target, then one rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write the new file to; it replaces ``path`` when the block ends.

    Readers see the old file or the complete new one, never a part: the temporary file lives in the
    target's folder (a rename across file systems is not atomic), its data and then the rename are on disk
    before the block returns (so a record written next may name the file), and it is removed if anything
    fails first. Its name is unpredictable (``mkstemp``), so no other process, nor a stale file of a killed
    run, holds it; ``suffix`` is for writers that pick the format from the extension.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {target}: folder {folder} does not exist; create it first")
    handle, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        fsync_path(temporary)
        # mkstemp creates the file private (0600); give it the mode a plain open() would.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
        fsync_path(folder)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the complete new one (:func:`atomic_file`)."""
    with atomic_file(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's data (or a folder's entries) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
