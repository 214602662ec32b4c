"""Where a sweep keeps its per-item results: fsynced JSON lines, one file per process, safe to kill.

Layout under the sweep's output folder::

    results/items-rank0.jsonl   one JSON object per finished item, written by process 0
    results/items-rank1.jsonl   ... by process 1 (data-parallel runs), and so on

Each process appends only to its own file, so processes never interleave bytes. A line is written with a
single ``write`` and then fsynced, and the newline is its last byte: after a kill the file ends either
with a complete line or with a torn one that has no newline. Readers skip a torn last line (that item is
simply not finished); the owner cuts it off with :meth:`ResultsStore.repair` before appending again. A
complete line that is not JSON means the file was edited or damaged, and reading stops with an error
naming the file and line rather than silently dropping results.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS_FOLDER = "results"
FILE_PATTERN = "items-rank*.jsonl"


class ResultsFileError(RuntimeError):
    """A results file holds a complete line that is not a JSON object; the message names file and line."""


class SweepLockedError(RuntimeError):
    """Another process is already writing this results file (two sweeps share an output folder)."""


class ResultsStore:
    """The results files of one sweep folder, seen from process ``rank`` (which appends to its own file)."""

    def __init__(self, out: str | os.PathLike, rank: int = 0) -> None:
        self.folder = Path(out) / RESULTS_FOLDER
        self.rank = rank
        self.path = self.folder / f"items-rank{rank}.jsonl"
        self._lock_handle = None

    def lock(self) -> None:
        """Take an exclusive lock on this rank's file, so a second sweep on the same folder fails fast."""
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / f".lock-rank{self.rank}", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise SweepLockedError(
                f"another sweep is already writing '{self.path}'; wait for it to finish or choose another --out"
            ) from None
        self._lock_handle = handle

    def unlock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def repair(self) -> int:
        """Cut a torn last line (left by a kill mid-write) off this rank's file; returns the bytes removed."""
        if not self.path.is_file():
            return 0
        with open(self.path, "rb+") as file:
            size = file.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            file.seek(size - 1)
            if file.read(1) == b"\n":
                return 0
            # Walk back to the last newline; everything after it is the torn line.
            position = size
            chunk_size = 4096
            keep = 0
            while position > 0:
                start = max(0, position - chunk_size)
                file.seek(start)
                chunk = file.read(position - start)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                position = start
            file.truncate(keep)
            file.flush()
            os.fsync(file.fileno())
            return size - keep

    def append(self, record: dict[str, Any]) -> None:
        """Append one item's record as a line, durably (fsync) before returning."""
        line = json.dumps(record, sort_keys=True) + "\n"
        if "\n" in line[:-1]:
            raise ValueError("a results record must serialise to a single line")
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as file:
            file.write(line.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())

    def files(self) -> list[Path]:
        """Every process's results file in this folder (also those of earlier runs with more processes)."""
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob(FILE_PATTERN))

    def records(self) -> Iterator[dict[str, Any]]:
        """Every complete record of every results file; torn last lines are skipped."""
        for path in self.files():
            yield from read_records(path)

    def finished(self) -> dict[str, dict[str, Any]]:
        """Records by item key; the first record of a key wins (a key is only written twice by a race)."""
        by_key: dict[str, dict[str, Any]] = {}
        for record in self.records():
            by_key.setdefault(record["key"], record)
        return by_key


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The complete records of one results file, in order; a torn last line (no newline) is skipped."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    # The piece after the last newline is empty for a clean file, a torn line after a kill.
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ResultsFileError(
                f"line {number} of '{path}' is not valid JSON ({error}); the file was edited or damaged. "
                "Delete that line to recompute its item on the next run"
            ) from None
        if not isinstance(record, dict) or "key" not in record:
            raise ResultsFileError(
                f"line {number} of '{path}' is not a sweep record (a JSON object with a 'key'); "
                "delete that line to recompute its item on the next run"
            )
        yield record
