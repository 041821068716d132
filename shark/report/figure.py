"""The one place that imports matplotlib: a headless (Agg) figure that is saved and closed in one step."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def figure(path: str | Path, *, width: float = 7.0, height: float = 4.2, ncols: int = 1, nrows: int = 1,
           sharex: bool = False) -> Iterator[Any]:
    """Yields the axes (an array when there are several); on exit the PNG is written to `path` and the figure
    freed."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on servers and in CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=True, sharex=sharex)
    try:
        yield axes
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
