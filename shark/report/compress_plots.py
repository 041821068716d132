"""Algorithm 1's path (`shark compress`): held-out AUC and embedding memory against the fields kept, one point per
pruning round, with the AUC floor and the memory target; and the first round's F-Permutation score of every field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shark.report.figure import figure


def has_data(summary: dict[str, Any]) -> bool:
    return bool(summary.get("compression", {}).get("base"))


def has_curves(summary: dict[str, Any]) -> bool:
    """The paper's Figure 2 (F-P, Permutation, random drop orders) was drawn on the unpruned model."""
    return bool((summary.get("compression", {}).get("kept_curves") or {}).get("curves"))


def plot_compression(summary: dict[str, Any], path: Path) -> None:
    c = summary["compression"]
    base_auc = c["base"]["auc"]
    kept = [r for r in c["rounds"] if r["accepted"]]
    rejected = [r for r in c["rounds"] if not r["accepted"]]
    with figure(path, width=11, height=4.4, ncols=2) as (ax, bx):
        n0 = kept[0]["fields_kept"] + len(kept[0]["deleted"]) if kept else len(c["fields_kept"])
        xs = [n0] + [r["fields_kept"] for r in kept]
        ax.plot(xs, [base_auc] + [r["auc"] for r in kept], "o-", color="tab:blue", label="held-out AUC")
        for r in kept:
            ax.annotate("-" + ", ".join(r["deleted"]), (r["fields_kept"], r["auc"]), fontsize=7, rotation=30,
                        xytext=(3, 3), textcoords="offset points")
        if rejected:
            ax.plot([r["fields_kept"] for r in rejected], [r["auc"] for r in rejected], "x", color="tab:red",
                    markersize=9, label="rolled back (below the floor)")
        ax.axhline(c["auc_floor"], color="tab:red", ls="--", lw=1, label=f"AUC floor {c['auc_floor']:.4f}")
        ax.invert_xaxis()  # pruning goes left to right
        ax.set_xlabel("fields kept")
        ax.set_ylabel("held-out AUC")
        ax.set_title(f"F-Permutation pruning: {len(c['deleted'])} fields deleted")
        ax.grid(alpha=0.3)
        mx = ax.twinx()  # memory on its own axis: fine-tuning on fresh rows adds rows, so it can also rise
        mx.plot(xs, [1.0] + [r["memory_fraction"] for r in kept], "s--", color="tab:green", ms=4,
                label="embedding memory")
        target = c["config"].get("memory_target")
        if target:
            mx.axhline(target, color="tab:green", ls=":", lw=1, label=f"memory target {target:.0%}")
        mx.set_ylabel("embedding memory (fraction of the unpruned model)")
        lines = ax.get_legend_handles_labels()
        more = mx.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower left")

        ranking = c.get("first_ranking")
        if ranking:  # the first round's scores of every field, lowest (deleted first) on the left
            names = sorted(ranking, key=ranking.get)
            deleted = set(c["deleted"])
            colours = ["tab:red" if n in deleted else "tab:blue" for n in names]
            bx.bar(range(len(names)), [ranking[n] for n in names], color=colours)
            bx.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
            bx.set_yscale("log")
            bx.set_ylabel("F-Permutation score (|Taylor term|, log)")
            bx.set_title("first round's field scores (red: deleted by the end)")
        else:
            bx.set_axis_off()
