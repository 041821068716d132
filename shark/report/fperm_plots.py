"""F-Permutation plots from the JSON dicts of `shark bench fperm-curve` / `shark bench fperm` (or any dict with
the same keys): the field ranking as a bar chart, AUC against the number of fields kept (the paper's Figure 2),
and the scoring cost against the field count.

    ranking_plot(result, "ranking.png")            # result["scores"][method] = {"ranking", "scores"}
    kept_curves_plot(result, "auc_vs_kept.png")     # result["curves"], result["random_curves"]
    cost_plot(bench, "cost.png")                    # bench["fields"], bench["seconds_median"]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shark.report.figure import figure

ROLE_COLOURS = {"strong": "#1b7837", "weak": "#7fbf7b", "duplicate": "#f1a340", "noise": "#b2182b"}
UNKNOWN = "#4575b4"
METHOD_STYLE = {"fperm-abs": ("#d95f02", "-"), "fperm-signed": ("#e6ab02", ":"),
                "permutation-T1": ("#1b9e77", "--"), "permutation-T5": ("#66a61e", "--"), "forward": ("#777777", ":"),
                "forward-backward": ("#333333", ":")}


def ranking_plot(result: Mapping[str, Any], path: str | Path, method: str = "fperm-abs") -> Path:
    """Bar chart of one method's score per field, most important left; bars are coloured by the teacher's role
    of the field when result["truth"] ({field: {"role", "importance"}}) is known."""
    if method not in result.get("scores", {}):
        raise KeyError(f"no scores for method {method!r}; have {sorted(result.get('scores', {}))}")
    s = result["scores"][method]
    fields = list(s["ranking"])
    values = [s["scores"][f] for f in fields]
    truth = result.get("truth") or {}
    colours = [ROLE_COLOURS.get(truth.get(f, {}).get("role"), UNKNOWN) for f in fields]
    with figure(path, width=max(7.0, 0.32 * len(fields) + 2), height=4.2) as ax:
        ax.bar(range(len(fields)), values, color=colours)
        ax.set_xticks(range(len(fields)))
        ax.set_xticklabels(fields, rotation=90, fontsize=8)
        ax.set_ylabel(f"{method} score")
        title = f"Field ranking ({method})"
        rho = (result.get("spearman_with_teacher") or {}).get(method)
        if rho is not None:
            title += f": Spearman with the teacher's ranking {rho:.3f}"
        ax.set_title(title, fontsize=10)
        if truth:
            from matplotlib.patches import Patch  # matplotlib is already loaded by figure()

            used = [r for r in ROLE_COLOURS if any(truth.get(f, {}).get("role") == r for f in fields)]
            ax.legend(handles=[Patch(color=ROLE_COLOURS[r], label=f"teacher: {r}") for r in used], fontsize=8)
    return Path(path)


def kept_curves_plot(result: Mapping[str, Any], path: str | Path) -> Path:
    """Held-out AUC against the number of fields kept, one line per method (area in the legend), random
    orders as thin grey lines with their mean area."""
    curves = result.get("curves") or {}
    if not curves:
        raise KeyError("no curves in the result")
    with figure(path, width=7.0, height=4.5) as ax:
        randoms = result.get("random_curves") or []
        for i, c in enumerate(randoms):
            ax.plot(c["fields_kept"], c["auc"], color="#999999", lw=0.8, alpha=0.7,
                    label=(f"random ({len(randoms)} orders), mean area "
                           f"{sum(r['area'] for r in randoms) / len(randoms):.4f}") if i == 0 else None)
        for name, c in curves.items():
            colour, style = METHOD_STYLE.get(name, (None, "-"))
            ax.plot(c["fields_kept"], c["auc"], style, color=colour, lw=2, marker="o", ms=3,
                    label=f"{name}, area {c['area']:.4f}")
        ax.invert_xaxis()  # fields are removed left to right
        ax.set_xlabel("fields kept")
        ax.set_ylabel("held-out AUC")
        src = (result.get("data") or {}).get("source", "")
        ax.set_title(f"AUC vs fields kept{' (' + Path(src).name + ')' if src else ''}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return Path(path)


def cost_plot(bench: Mapping[str, Any], path: str | Path) -> Path:
    """Scoring seconds against the field count for every timed method (log scale), from `shark bench fperm`; with
    bench["cost_in_forward_backward_passes"], a panel gives each method's time in units of the model's own
    forward + backward pass (flat for F-P, growing with the field count for Permutation); with
    bench["fields_scored_on_one_model"], a panel gives the seconds on one model against the number of its fields
    asked to score."""
    fields, med = bench["fields"], bench["seconds_median"]
    mults = list(fields)
    x = [fields[m] for m in mults]
    units = bench.get("cost_in_forward_backward_passes")
    scored = bench.get("fields_scored_on_one_model")
    panels = [(med, "seconds per scoring of every field", f"Scoring cost ({bench['spec']['rows']:,} rows)",
               "fields (model and scored)")]
    if units:
        panels.append((units, "cost in model forward+backward passes",
                       "Relative to the model's own forward + backward", "fields (model and scored)"))
    if scored:
        panels.append((scored["seconds_median"], "seconds", f"One {scored['model_fields']}-field model",
                       "fields asked to score"))
    with figure(path, width=6.0 * len(panels), height=4.2, ncols=len(panels)) as axes:
        for ax, (data, ylabel, title, xlabel) in zip(axes if len(panels) > 1 else [axes], panels):
            for name, per in data.items():
                colour, style = METHOD_STYLE.get(name, (None, "-"))
                ax.plot(x, [per[m] for m in mults], style, color=colour, marker="o", label=name)
            ax.set_yscale("log")
            ax.set_xticks(x)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
    return Path(path)


def write_fperm_plots(result: Mapping[str, Any], out_dir: str | Path) -> dict[str, str]:
    """Every plot the dict supports, written into out_dir; returns {plot: path}."""
    out = Path(out_dir)
    written: dict[str, str] = {}
    if result.get("scores"):
        method = "fperm-abs" if "fperm-abs" in result["scores"] else next(iter(result["scores"]))
        written["ranking"] = str(ranking_plot(result, out / "fperm_ranking.png", method))
    if result.get("curves"):
        written["auc_vs_fields_kept"] = str(kept_curves_plot(result, out / "fperm_auc_vs_fields_kept.png"))
    if result.get("seconds_median") and result.get("fields"):
        written["cost"] = str(cost_plot(result, out / "fperm_cost.png"))
    return written
