"""A run's report directory: summary.json plus every plot the summary has data for.

A small dispatcher: each plot family registers (name, has-data test, plot function) in PLOTS; write_report runs
the ones whose data is in the summary. Plot modules import matplotlib only through shark.report.figure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shark.report import compress_plots, fperm_plots, stream_plots, tier_plots

Plot = tuple[str, Callable[[dict[str, Any]], bool], Callable[[dict[str, Any], Path], None]]

PLOTS: list[Plot] = [
    ("stream.png", stream_plots.has_data, stream_plots.plot_stream),
    ("compression.png", compress_plots.has_data, compress_plots.plot_compression),
    ("fields_kept.png", compress_plots.has_curves, lambda s, path: fperm_plots.kept_curves_plot(
        {**s["compression"]["kept_curves"], "data": s.get("data")}, path)),
    ("tiers.png", tier_plots.has_data, tier_plots.plot_tiers),
]


def write_report(summary: dict[str, Any], directory: str | Path, name: str = "summary.json") -> list[Path]:
    """Write the summary (as `name`) and the plots into `directory` (created if needed); returns the files
    written."""
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"report directory {out}: {exc.strerror or exc}") from None
    path = out / name
    path.write_text(json.dumps(summary, indent=2, default=jsonable) + "\n")
    written = [path]
    for file, has_data, plot in PLOTS:  # not `name`: that is the summary's file name
        if has_data(summary):
            plot(summary, out / file)
            written.append(out / file)
    return written


def jsonable(x: Any) -> Any:
    """json.dumps' default for summaries: numpy scalars and arrays, sets and tuples; anything else as text."""
    if hasattr(x, "item"):  # numpy scalars
        return x.item()
    if hasattr(x, "tolist"):  # numpy arrays
        return x.tolist()
    if isinstance(x, (set, tuple)):
        return list(x)
    return str(x)
