"""Where a drifting stream's hot rows sit in the F-Quantization tiers: a fixed sample of the embedding rows of the
k most frequent values of every categorical field before the drift ("old") and after it ("new"), read without
side effects: one read-only stored-precision pull (PSClient.pull_tiers) creates no row and touches no priority,
and marks the rows not in the store yet as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shark.data.batch import MISSING_KEY
from shark.quant.tier_frequency import STATES  # indexed by tier code; TIER_ABSENT == 3
from shark.train.config import TrainConfig

GROUPS = ("new", "old")  # the hot rows of the second concept, of the first


@dataclass(frozen=True)
class HotRows:
    """{table: (n,) unique row ids} per group; a row in both groups (few values, or a hash collision) is in
    neither, so the groups can be told apart."""

    ids: dict[str, dict[str, np.ndarray]]  # group -> table -> ids

    @staticmethod
    def of(generator: Any, config: TrainConfig, tables: list[str], k: int) -> HotRows:
        """The rows of the k most frequent values of each non-duplicate field under each concept."""
        transform = config.feature_transform(tables)
        column = {t: i for i, t in enumerate(tables)}
        rows: dict[str, dict[str, np.ndarray]] = {}
        for group, second in (("new", True), ("old", False)):
            keys = generator.hot_keys(k, second_concept=second)
            matrix = np.full((k, len(tables)), MISSING_KEY, dtype=np.uint64)
            for name, kk in keys.items():
                matrix[:kk.size, column[name]] = kk
            ids = transform.table_ids(matrix)
            rows[group] = {name: np.unique(ids[:kk.size, column[name]]) for name, kk in keys.items()}
        out: dict[str, dict[str, np.ndarray]] = {g: {} for g in GROUPS}
        for name in rows["new"]:
            new, old = rows["new"][name], rows["old"][name]
            both = np.intersect1d(new, old)
            for group, ids in (("new", new), ("old", old)):
                kept = np.setdiff1d(ids, both)
                if kept.size:
                    out[group][name] = kept
        return HotRows(out)

    def count(self, group: str) -> int:
        return int(sum(v.size for v in self.ids[group].values()))


def probe_tiers(client: Any, hot: HotRows) -> dict[str, dict[str, float]]:
    """{group: {fp32, fp16, int8, absent: fraction of the group's rows}} from one read-only pull of their tiers."""
    tables = sorted({t for g in GROUPS for t in hot.ids[g]})
    joined = {t: np.unique(np.concatenate([hot.ids[g][t] for g in GROUPS if t in hot.ids[g]])) for t in tables}
    tier_of = client.pull_tiers(joined) if joined else {}
    out: dict[str, dict[str, float]] = {}
    for g in GROUPS:
        states = np.concatenate([tier_of[t][np.searchsorted(joined[t], ids)] for t, ids in hot.ids[g].items()]) \
            if hot.ids[g] else np.zeros(0, dtype=np.uint8)
        n = max(states.size, 1)
        counts = np.bincount(states, minlength=len(STATES))  # 0 fp32, 1 fp16, 2 int8, 3 absent
        out[g] = {s: float(c) / n for s, c in zip(STATES, counts)}
    return out
