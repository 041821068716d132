"""The stream plot: progressive AUC per window vs examples (the drift point marked) and, on a drifting stream
with F-Quantization, the share of the new and old hot rows kept in high precision (fp32 + fp16) vs examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shark.report.figure import figure


def has_data(summary: dict[str, Any]) -> bool:
    return bool((summary.get("stream") or {}).get("progressive_windows"))


def plot_stream(summary: dict[str, Any], path: Path) -> None:
    st = summary["stream"]
    curve = st["progressive_windows"]
    drift = st.get("drift") or {}
    samples = (drift.get("tiers") or {}).get("samples") or []
    # two stacked panels sharing the examples axis when there are tier samples
    with figure(path, width=7.5, height=6.4 if samples else 4.2, nrows=2 if samples else 1, sharex=True) as ax:
        top, bottom = (ax[0], ax[1]) if samples else (ax, None)
        top.plot([w["examples"] for w in curve], [w["auc"] for w in curve], marker=".", color="tab:blue",
                 label=f"progressive AUC ({st['config']['window']:,}-example windows)")
        top.set_ylabel("AUC")
        top.set_title("Stream: progressive AUC" + (" with concept drift" if drift else ""))
        for axis in (top, bottom):
            if axis is not None and drift:
                _mark_drift(axis, drift)
        top.legend(loc="lower right", fontsize=8)
        top.grid(alpha=0.3)
        if bottom is not None:
            x = [s["examples"] for s in samples]
            for group, colour, label in (("new", "tab:green", "new hot rows"), ("old", "tab:red", "old hot rows")):
                rows = drift["tiers"]["rows"][group]
                bottom.plot(x, [s[group]["fp32"] + s[group]["fp16"] for s in samples], marker=".", color=colour,
                            label=f"{label} ({rows}): fp32 + fp16")
                bottom.plot(x, [s[group]["fp32"] for s in samples], linestyle=":", color=colour,
                            label=f"{label}: fp32 only")
            bottom.set_ylim(-0.03, 1.03)
            bottom.set_ylabel("share of the rows")
            bottom.set_title("F-Quantization tiers of the hot rows before/after the drift", fontsize=10)
            bottom.legend(loc="center right", fontsize=8)
            bottom.grid(alpha=0.3)
        (bottom if bottom is not None else top).set_xlabel("examples trained")


def _mark_drift(axis: Any, drift: dict[str, Any]) -> None:
    """A dashed line where the drift reaches the training (a band when the workers reach it at different times;
    with drift_every, the later flips at their nominal rows)."""
    first, last = drift.get("drift_examples") or (drift["drift_at"], drift["drift_at"])
    axis.axvline(first, color="black", linestyle="--", linewidth=1, label=f"drift (row {drift['drift_at']:,})")
    if last > first:
        axis.axvspan(first, last, color="black", alpha=0.08)
    every = drift.get("drift_every") or 0
    if every:
        for x in range(drift["drift_at"] + every, int(axis.get_xlim()[1]) + 1, every):
            axis.axvline(x, color="black", linestyle=":", linewidth=1)
