"""Apply each (worker_id, seq) push at most once, with bounded memory.

Per worker: a high-water mark hw (every seq <= hw has been applied) and the set of applied seqs above it.
Pushes may arrive out of order within `window` seqs of hw; the set never holds more than `window` entries because
a seq beyond hw + window is refused (SeqOutOfWindow) instead of being accepted and making the set unbounded.
"""

from __future__ import annotations

import numpy as np

from ps.store.errors import SeqOutOfWindow
from ps.store.validation import check_worker_seq


class SeqTracker:
    def __init__(self, window: int = 4096) -> None:
        self.window = window
        self.hw: dict[int, int] = {}  # worker -> high-water mark (-1 = nothing yet; seqs start at 0)
        self.above: dict[int, set[int]] = {}  # worker -> applied seqs > hw
        # worker -> pushes applied, over the table's whole life (checkpointed, and rebuilt by a push-log replay):
        # the durable ledger. Equal to the distinct seqs marked unless something applied a seq twice.
        self.count: dict[int, int] = {}

    def check(self, worker_id: int, seq: int) -> bool:
        """True if (worker_id, seq) was applied already. Raises before anything changes if it cannot be accepted."""
        check_worker_seq(worker_id, seq)
        hw = self.hw.get(int(worker_id), -1)
        if seq <= hw or seq in self.above.get(int(worker_id), ()):
            return True
        if seq > hw + self.window:
            raise SeqOutOfWindow(f"worker {worker_id}: seq {seq} is more than {self.window} beyond the last "
                                 f"contiguous applied seq {hw}")
        return False

    def mark(self, worker_id: int, seq: int) -> None:
        w, seq = int(worker_id), int(seq)
        hw = self.hw.get(w, -1)
        above = self.above.setdefault(w, set())
        above.add(seq)
        while hw + 1 in above:  # amortised O(1) per push: each seq leaves the set once
            hw += 1
            above.remove(hw)
        self.hw[w] = hw
        self.count[w] = self.count.get(w, 0) + 1

    def ledger(self) -> dict[int, dict[str, int]]:
        """Per worker: pushes applied, distinct seqs applied, the highest seq applied. A run whose pushes all
        landed once shows applied == distinct == highest + 1 on a table every step touches."""
        out = {}
        for w, hw in self.hw.items():
            above = self.above.get(w, set())
            distinct = hw + 1 + len(above)
            out[w] = {"applied": self.count.get(w, distinct), "distinct": distinct,
                      "highest": max(above) if above else hw}
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for a checkpoint: workers (W,), their hw (W,), and (worker, seq) pairs above hw (M, 2)."""
        workers = np.array(sorted(self.hw), dtype=np.int64)
        pairs = [(w, s) for w in workers.tolist() for s in sorted(self.above.get(w, ()))]  # <= window per worker
        return {"seq_workers": workers, "seq_hw": np.array([self.hw[w] for w in workers.tolist()], dtype=np.int64),
                "seq_above": np.array(pairs, dtype=np.int64).reshape(-1, 2),
                "seq_count": np.array([self.count.get(w, 0) for w in workers.tolist()], dtype=np.int64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], window: int = 4096) -> SeqTracker:
        t = cls(window)
        t.hw = {int(w): int(h) for w, h in zip(arrays["seq_workers"].tolist(), arrays["seq_hw"].tolist())}
        t.above = {w: set() for w in t.hw}
        for w, s in arrays["seq_above"].reshape(-1, 2).tolist():
            t.above.setdefault(int(w), set()).add(int(s))
        if "seq_count" in arrays:
            t.count = {int(w): int(c) for w, c in zip(arrays["seq_workers"].tolist(), arrays["seq_count"].tolist())}
        else:  # a checkpoint from before the ledger: each seq it knows was applied once
            t.count = {w: h + 1 + len(t.above.get(w, ())) for w, h in t.hw.items()}
        return t
