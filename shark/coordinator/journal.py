"""The coordinator's durable journal: `<checkpoint_dir>/coordinator/<run_id>/journal.jsonl`.

One JSON line per state-machine transition (phase, note, incarnation, time), appended and fsynced before the
coordinator acts in that phase; so a restarted coordinator knows which incarnation it is and in which phase its
predecessor died. What the resumed run continues from is the newest complete checkpoint of the run (RUN.json
carries the coordinator's resume state); the journal says what was lost since and why.

A torn line (a crash in the middle of an append) is skipped; the next append starts on a new line.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class Journal:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "journal.jsonl"
        self._lock = threading.Lock()

    def entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # the torn tail of a crashed append (a later append starts on a new line)
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def next_incarnation(self) -> int:
        """0 for a new run; one more than the last recorded incarnation after a restart."""
        seen = [int(e.get("incarnation", 0)) for e in self.entries()]
        return max(seen) + 1 if seen else 0

    def append(self, entry: dict[str, Any]) -> None:
        data = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # after a torn line
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
