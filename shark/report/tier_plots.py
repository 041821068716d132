"""Where rows sit in the tiers against how often training touched them (summary["model"]["tiers_by_frequency"],
shark.coordinator.tier_report): one stacked bar per access bin (share of its rows in fp32 / fp16 / int8), and the
number of rows per bin on a second, logarithmic axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shark.report.figure import figure

_TIERS = (("fp32", "#08519c"), ("fp16", "#6baed6"), ("int8", "#fdae6b"), ("absent", "#bdbdbd"))


def has_data(summary: dict[str, Any]) -> bool:
    return bool(((summary.get("model") or {}).get("tiers_by_frequency") or {}).get("bins"))


def _label(lo: int) -> str:
    """A bin's lower bound, 2^k: 1, 2, ..., 512, 1k, 2k, ..., 512k, 1M, ..."""
    return str(lo) if lo < 1024 else f"{lo >> 10}k" if lo < 1 << 20 else f"{lo >> 20}M"


def plot_tiers(summary: dict[str, Any], path: Path) -> None:
    report = summary["model"]["tiers_by_frequency"]
    bins = report["bins"]
    x = list(range(len(bins)))
    with figure(path, width=max(7.0, 0.45 * len(bins) + 3), height=4.4) as ax:
        bottom = [0.0] * len(bins)
        for tier, colour in _TIERS:
            share = [b[tier] for b in bins]
            if tier == "absent" and not any(share):
                continue
            ax.bar(x, share, bottom=bottom, color=colour, label=tier, width=0.8)
            bottom = [s + h for s, h in zip(bottom, share)]
        ax.set_xticks(x)
        ax.set_xticklabels([_label(b["accesses"][0]) for b in bins], fontsize=8)
        ax.set_xlabel("training accesses of the row (bin [2^k, 2^(k+1)), labelled by 2^k)")
        ax.set_ylabel("share of the rows")
        ax.set_ylim(0, 1)
        rows = ax.twinx()
        rows.plot(x, [b["rows"] for b in bins], "k.-", lw=1, label="rows")
        rows.set_yscale("log")
        rows.set_ylabel("rows in the bin (line)")
        method = {"fq": "F-Quantization", "mpe": "MPE"}.get(report["quant"], report["quant"])
        ax.set_title(f"{method} tiers by training accesses ({report['training_rows_read']:,} training "
                     f"rows read, {report['tables']} tables)", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
