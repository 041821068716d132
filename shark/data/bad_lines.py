"""What a reader does with malformed lines: the policy, the per-read report, and the gate that enforces both."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from shark.data.errors import DataError

ON_ERROR = ("skip", "stop")
# The bad-line fraction is only judged once this many lines were read: a bad line in the first 50 would otherwise
# abort a file that is 99.99% clean. Files shorter than this are judged at end of file.
MIN_LINES_FOR_FRACTION = 1000
_SUMMARY_EXAMPLES = 3


@dataclass(frozen=True)
class BadLinePolicy:
    on_error: str = "skip"  # "skip": drop, count and report bad lines; "stop": raise at the first one
    max_fraction: float = 0.01  # skip mode: raise once more than this fraction of lines is bad
    max_examples: int = 20  # bad lines kept verbatim in the report

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be 'skip' or 'stop', got {self.on_error!r}")
        frac = self.max_fraction
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 <= frac <= 1.0:
            raise ValueError(f"max_fraction must be a number in [0, 1], got {frac!r}")
        if isinstance(self.max_examples, bool) or not isinstance(self.max_examples, int) or self.max_examples < 0:
            raise ValueError(f"max_examples must be an integer >= 0, got {self.max_examples!r}")


@dataclass(frozen=True)
class BadLine:
    line: int  # 1-based physical line (row number for Parquet)
    kind: str  # short reason category, e.g. "field_count", "label", "dense", "categorical", "empty_line"
    reason: str  # human text, e.g. "39 fields, expected 40"


@dataclass
class ReadReport:
    """Counts of one read of one file. Readers reset it when they start, so reuse one per epoch if you like."""

    path: str = ""
    max_examples: int = 20
    rows_ok: int = 0
    rows_bad: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # kind -> count
    examples: list[tuple[int, str]] = field(default_factory=list)  # first max_examples (line, reason)

    def reset(self, path: str, max_examples: int) -> None:
        self.path, self.max_examples = path, max_examples
        self.rows_ok, self.rows_bad = 0, 0
        self.reasons, self.examples = {}, []

    def add_ok(self, n: int) -> None:
        self.rows_ok += int(n)

    def add_bad(self, bad: BadLine) -> None:
        self.rows_bad += 1
        self.reasons[bad.kind] = self.reasons.get(bad.kind, 0) + 1
        if len(self.examples) < self.max_examples:
            self.examples.append((bad.line, bad.reason))

    @property
    def lines_read(self) -> int:
        return self.rows_ok + self.rows_bad

    @property
    def bad_fraction(self) -> float:
        return self.rows_bad / self.lines_read if self.lines_read else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rows_ok": self.rows_ok,
            "rows_bad": self.rows_bad,
            "bad_fraction": self.bad_fraction,
            "reasons": dict(self.reasons),
            "examples": [{"line": line, "reason": reason} for line, reason in self.examples],
        }

    def examples_text(self, k: int = _SUMMARY_EXAMPLES) -> str:
        """'line 4: 39 fields, expected 40; line 7: ...' for the first k examples ('; ...' if there are more)."""
        parts = [f"line {line}: {reason}" for line, reason in self.examples[:k]]
        if self.rows_bad > len(parts):
            parts.append("...")
        return "; ".join(parts)

    def summary(self) -> str:
        head = f"{self.path}: {self.rows_ok:,} rows read"
        if not self.rows_bad:
            return f"{head}, no malformed lines"
        noun = "line" if self.rows_bad == 1 else "lines"
        return f"{head}, {self.rows_bad:,} malformed {noun} skipped ({self.examples_text()})"


class BadLineGate:
    """Applies a policy while one file is read. Bad lines must be added in line order (readers sort them)."""

    def __init__(self, path: str, policy: BadLinePolicy, report: ReadReport | None) -> None:
        self.path, self.policy = path, policy
        self.report = report if report is not None else ReadReport()
        self.report.reset(path, policy.max_examples)

    def add(self, n_ok: int, bad: Iterable[BadLine]) -> None:
        """Record one batch's good-row count and bad lines; raise DataError if the policy says so."""
        bad = list(bad)
        if bad and self.policy.on_error == "stop":
            raise DataError(f"{self.path}:{bad[0].line}: {bad[0].reason}")
        self.report.add_ok(n_ok)
        for b in bad:
            self.report.add_bad(b)
        if self.report.lines_read >= MIN_LINES_FOR_FRACTION:
            self._check_fraction()

    def finish(self) -> None:
        """End of file: judge the fraction however few lines there were; an empty source is an error too."""
        if self.report.lines_read == 0:
            raise DataError(f"{self.path}: contains no data rows")
        self._check_fraction(at_end=True)

    def _check_fraction(self, at_end: bool = False) -> None:
        r = self.report
        if r.rows_bad and r.bad_fraction > self.policy.max_fraction:
            first = ", ".join(str(line) for line, _ in r.examples[:5]) or "?"
            so_far = "" if at_end else " so far"
            raise DataError(
                f"{self.path}: {r.rows_bad:,} of {r.lines_read:,} lines read{so_far} are malformed "
                f"({_pct(r.bad_fraction)}, more than the allowed {_pct(self.policy.max_fraction)}); "
                f"first bad lines: {first} ({r.examples_text()})"
            )


def _pct(x: float) -> str:
    return f"{x * 100:.3g}%"  # 3 significant digits: "1.05%", "0.1%", "0.001%"
