"""The end-of-run report of where rows sit in the tiers against how often training touched them (F-Quantization
and MPE runs): the coordinator reads the training rows once (at most MAX_ROWS), counts each row's accesses, samples
every access bin (at most SAMPLE_CAP rows each) and pulls those rows' tiers read-only (no row created, no priority
changed). The arithmetic is shark.quant.tier_frequency's.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from shark.data.batch import first_rows
from shark.data.errors import DataError
from shark.quant.tier_frequency import AccessCounter, sample_by_bin, tier_fractions

MAX_ROWS = 1_000_000  # training rows read for the counts (the first ones; one pass)
SAMPLE_CAP = 20_000  # rows whose tier is pulled, per access bin

log = logging.getLogger(__name__)


def tiers_by_frequency(coord: Any) -> dict[str, Any] | None:
    """None when the run stores every row alike (no F-Q or MPE) or trains on an endless stream. The report is an
    addition to a finished run: if the training rows cannot be read again or the tier pull fails, it says why
    ({"error": ...}) and the run still ends with its model and summary."""
    from worker.client.retry import PSClientError

    try:
        return _report(coord)
    except (OSError, DataError, PSClientError) as exc:
        log.warning("tiers-by-accesses report skipped: %s", exc)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _report(coord: Any) -> dict[str, Any] | None:
    cfg, spec, plan = coord.config, coord.spec, coord.plan
    if cfg.quant not in ("fq", "mpe") or spec.stream:
        return None
    names = list(plan.table_names)
    kept = [t for t in names if t in coord.fields]  # a pruned model's deleted tables are gone from the shards
    if not kept:
        return None
    t0 = time.perf_counter()
    columns = np.array([names.index(t) for t in kept])
    transform = cfg.feature_transform(names)  # as the workers map ids
    counter = AccessCounter(kept)
    for raw in first_rows(plan.train_batches(), MAX_ROWS):
        counter.add(transform.table_ids(raw.keys)[:, columns])
    ids, bins, rows_per_bin = sample_by_bin(counter.counts(), SAMPLE_CAP, seed=cfg.seed)
    tiers = coord.client.pull_tiers(ids) if ids else {}
    return {"quant": cfg.quant, "training_rows_read": counter.rows, "sample_cap": SAMPLE_CAP,
            "tables": len(kept), "bins": tier_fractions(bins, tiers, rows_per_bin),
            "seconds": round(time.perf_counter() - t0, 2)}
