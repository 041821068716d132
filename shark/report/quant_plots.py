"""The F-Quantization experiment's plot (paper Figure 3 / Table 3): held-out AUC against embedding memory, one
point per method, against all bytes and against the row values only. The AUC is paired with the fp32 run of the
same seed (seed-to-seed AUC varies more than the methods differ): mean difference, bars min-max over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shark.report.figure import figure

_COLOURS = {"none": "black", "fp16": "tab:orange", "int8": "tab:red", "fq": "tab:blue", "mpe": "tab:green"}


def plot_quant(result: dict[str, Any], path: Path) -> None:
    runs = result["runs"]
    fp32 = {r["seed"]: r for r in runs if r["quant"] == "none"}
    with figure(path, width=11, height=4.4, ncols=2) as axes:
        for ax, key, what in ((axes[0], "bytes", "every byte (payload, scales, metadata, index)"),
                              (axes[1], "payload_bytes", "row values only (payload)")):
            for m in result["methods"]:
                rs = [r for r in runs if r["method"] == m["method"] and r["seed"] in fp32 and r.get(key)]
                if not rs:
                    continue
                xs = [r[key] / fp32[r["seed"]][key] for r in rs]
                ys = [r["auc"] - fp32[r["seed"]]["auc"] for r in rs]
                x, y = sum(xs) / len(xs), sum(ys) / len(ys)
                ax.errorbar(x, y, yerr=[[y - min(ys)], [max(ys) - y]], fmt="o", capsize=3,
                            color=_COLOURS.get(m["quant"], "tab:gray"))
                ax.annotate(m["method"], (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
            base = sum(r["auc"] for r in fp32.values()) / len(fp32)
            ax.axhline(0.0, color="black", ls="--", lw=1, label=f"fp32 (mean AUC {base:.4f})")
            ax.axhline(-0.001, color="tab:gray", ls=":", lw=1, label="fp32 - 0.001")
            ax.axhline(-0.002, color="tab:gray", ls="-.", lw=1, label="fp32 - 0.002")
            ax.set_xlabel(f"embedding memory / fp32's: {what}")
            ax.set_ylabel(f"held-out AUC - fp32's, same seed ({len(fp32)} seeds)")
            spec = result.get("spec", {})
            ax.set_title(f"{spec.get('rounding', 'stochastic')} rounding, dim {spec.get('embedding_dim', '?')}, "
                         f"{spec.get('train_rows', 0):,} training rows", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
