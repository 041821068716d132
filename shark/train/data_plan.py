"""Where a run's batches come from: the synthetic generator, or a file split into train and held-out rows.

A file is split by a seeded hash of each row's line number (`shark.data.split.test_mask`), so the split does not
depend on the batch size or on which malformed lines were skipped; held-out rows are read in a second pass over
the file rather than buffered, so memory stays bounded by the batch size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shark.data.bad_lines import BadLinePolicy, ReadReport
from shark.data.batch import RawBatch
from shark.data.schema import CRITEO_SCHEMA, Schema
from shark.data.source import infer_schema, open_source
from shark.data.split import test_mask


@dataclass(frozen=True)
class DataSpec:
    source: str = "synthetic"  # "synthetic" or a path (Criteo TSV, CSV/TSV with header, Parquet; .gz ok)
    fmt: str = "auto"
    schema: Schema | None = None  # None: Criteo layout, or inferred from the header
    test_path: str | None = None  # a separate held-out file instead of a split
    test_fraction: float = 0.2
    split_seed: int = 0
    train_rows: int = 1_000_000  # synthetic only
    test_rows: int = 200_000  # synthetic only
    synth_seed: int = 0
    bad_lines: BadLinePolicy = field(default_factory=BadLinePolicy)
    stream: bool = False  # an endless training stream (synthetic only for now): see DataPlan.stream_batches
    # Synthetic concept drift (SynthConfig.drift_at / drift_every): 0 = none
    drift_at: int = 0
    drift_every: int = 0

    def __post_init__(self) -> None:
        if self.stream and self.source != "synthetic":
            raise ValueError("--stream supports --data synthetic for now (tailing a file or watching a directory "
                             "is not implemented yet)")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.train_rows < 1 or self.test_rows < 1:
            raise ValueError("train_rows and test_rows must be >= 1")
        if (self.drift_at or self.drift_every) and self.source != "synthetic":
            raise ValueError("concept drift (--drift-at, --drift-every) is a property of the synthetic generator: "
                             "it needs --data synthetic")
        if self.synthetic:
            self.synth_config()  # validates the drift knobs here, where the user's options are turned into a spec

    def synth_config(self) -> Any:
        """The synthetic generator's SynthConfig (seed and drift) for this spec."""
        from shark.data.synthetic import SynthConfig

        return SynthConfig(seed=self.synth_seed, drift_at=self.drift_at, drift_every=self.drift_every)

    @property
    def synthetic(self) -> bool:
        return self.source == "synthetic"


class DataPlan:
    """Train and held-out batch streams for one run, plus what the summary should say about the data."""

    def __init__(self, spec: DataSpec, batch_size: int, eval_batch_size: int) -> None:
        self.spec = spec
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.reports: dict[str, ReadReport] = {}
        if spec.synthetic:
            from shark.data.synthetic import SyntheticCriteo

            self.generator = SyntheticCriteo(spec.synth_config())
            self.schema = CRITEO_SCHEMA
        else:
            self.generator = None
            self.schema = spec.schema or infer_schema(spec.source, spec.fmt)

    @property
    def n_dense(self) -> int:
        return len(self.schema.dense)

    @property
    def table_names(self) -> list[str]:
        return list(self.schema.categorical)

    @property
    def train_rows_hint(self) -> int | None:
        """Rows per training pass when known in advance (for progress bars)."""
        return self.spec.train_rows if self.spec.synthetic and not self.spec.stream else None

    @property
    def test_rows_hint(self) -> int | None:
        return self.spec.test_rows if self.spec.synthetic else None

    def _read(self, path: str, role: str, batch_size: int) -> Iterator[RawBatch]:
        report = ReadReport(path=path)
        self.reports[role] = report
        return open_source(path, fmt=self.spec.fmt, schema=self.schema, batch_size=batch_size,
                           policy=self.spec.bad_lines, report=report)

    def _split(self, batches: Iterator[RawBatch], want_test: bool) -> Iterator[RawBatch]:
        for raw in batches:
            mask = test_mask(raw.lines, self.spec.split_seed, self.spec.test_fraction)
            part = raw.take(mask if want_test else ~mask)
            if len(part):
                yield part

    def train_batches(self, part: int = 0, parts: int = 1) -> Iterator[RawBatch]:
        """The training stream, or worker `part`'s share of it when `parts` workers split it."""
        _check_part(part, parts)
        if self.generator is not None:
            lo, hi = _range_of(self.spec.train_rows, part, parts)
            return self.generator.batches(hi - lo, self.batch_size, split="train", start=lo)
        batches = self._read(self.spec.source, "train", self.batch_size)
        return _stripe(batches if self.spec.test_path else self._split(batches, want_test=False), part, parts)

    def support_batches(self, rows: int, offset: int, part: int = 0, parts: int = 1) -> Iterator[RawBatch]:
        """Fresh training rows for fine-tuning after a pruning round: rows [offset, offset + rows) past the end of
        the training rows, split among `parts` workers. A one-pass model overfits rows it has seen (a second pass
        over early rows cost 0.06 AUC in a measurement), so the support set is never a replay."""
        _check_part(part, parts)
        if self.generator is None:
            raise ValueError("fine-tuning after pruning needs fresh rows, which only the synthetic source can supply "
                             "here: use --finetune-rows 0 with a file")
        lo, hi = _range_of(rows, part, parts)
        return self.generator.batches(hi - lo, self.batch_size, split="train",
                                      start=self.spec.train_rows + offset + lo)

    def stream_group_batches(self) -> int:
        """Batches per group of the endless stream: about one generator block (config.block_rows) of rows."""
        assert self.generator is not None
        return max(1, self.generator.config.block_rows // self.batch_size)

    def stream_batches(self, part: int = 0, parts: int = 1, start: int = 0) -> Iterator[RawBatch]:
        """The endless training stream of worker `part` of `parts`, from its batch number `start` on.

        The stream's rows are cut into groups of G full batches (G x batch_size rows, about one generator block);
        group g goes to worker g % parts, so worker w's batch k is global group w + (k // G) * parts, batch k % G
        of it. Deterministic and resumable from any batch position; no row goes to two workers or twice to one;
        every batch is full."""
        _check_part(part, parts)
        if self.generator is None:
            raise ValueError("--stream supports --data synthetic for now")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        g, b = self.stream_group_batches(), self.batch_size
        k = start
        while True:
            group, offset = divmod(k, g)
            first = (part + group * parts) * g * b + offset * b
            yield from self.generator.batches((g - offset) * b, b, split="train", start=first)
            k = (group + 1) * g

    def stream_examples_at(self, row: int, parts: int) -> tuple[int, int]:
        """When the stream of `parts` workers reaches global row `row`: the examples trained (all workers, in the
        coordinator's merged order, which interleaves the workers by relative position) when the first worker
        takes a row >= `row`, and when the last one does. Equal when row is a multiple of parts groups."""
        _check_part(0, parts)
        gb = self.stream_group_batches() * self.batch_size
        group, offset = divmod(row, gb)
        rnd, holder = divmod(group, parts)
        # worker w's groups are w, w + parts, ...: the holder meets the row inside its group of round rnd, later
        # workers at the start of theirs (all past it), earlier ones only in the next round
        local = [rnd * gb + offset if w == holder else (rnd if w > holder else rnd + 1) * gb for w in range(parts)]
        return parts * min(local), parts * max(local)

    def test_batches(self, part: int = 0, parts: int = 1) -> Iterator[RawBatch]:
        _check_part(part, parts)
        if self.generator is not None:
            lo, hi = _range_of(self.spec.test_rows, part, parts)
            return self.generator.batches(hi - lo, self.eval_batch_size, split="test", start=lo)
        if self.spec.test_path:
            return _stripe(self._read(self.spec.test_path, "test", self.eval_batch_size), part, parts)
        batches = self._split(self._read(self.spec.source, "test", self.eval_batch_size), want_test=True)
        return _stripe(batches, part, parts)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self.spec.source, "label": self.schema.label,
                             "dense": list(self.schema.dense), "categorical": list(self.schema.categorical)}
        if self.generator is not None:
            d.update(train_rows=None if self.spec.stream else self.spec.train_rows, test_rows=self.spec.test_rows,
                     seed=self.spec.synth_seed, stream=self.spec.stream)
            if self.spec.drift_at:
                d.update(drift_at=self.spec.drift_at, drift_every=self.spec.drift_every)
        else:
            d.update(test_path=self.spec.test_path, test_fraction=None if self.spec.test_path else
                     self.spec.test_fraction, split_seed=self.spec.split_seed)
        d["read_reports"] = {role: {**r.to_dict(), "summary": r.summary()} for role, r in self.reports.items()}
        return d

    def teacher(self) -> dict[str, Any] | None:
        """The synthetic teacher's own held-out AUC (the ceiling any model can reach) and the true field ranking
        (importance = the teacher's permutation importance in nats, see shark.data.synthetic.FieldInfo)."""
        if self.generator is None:
            return None
        # group_dense: the model sees the 13 dense features as one field, so rank them as one.
        ranking = [{"field": f.name, "role": f.role, "importance": f.importance, "duplicate_of": f.duplicate_of}
                   for f in self.generator.field_ranking(group_dense=True)]
        return {"auc": self.generator.teacher_auc(self.spec.test_rows, split="test"), "field_ranking": ranking}


def _check_part(part: int, parts: int) -> None:
    if parts < 1 or not 0 <= part < parts:
        raise ValueError(f"part must be in [0, {parts}), got {part}")


def _range_of(n_rows: int, part: int, parts: int) -> tuple[int, int]:
    """Contiguous rows [lo, hi) of part `part`: the synthetic stream is i.i.d., so contiguous shares are fair."""
    return n_rows * part // parts, n_rows * (part + 1) // parts


def _stripe(batches: Iterator[RawBatch], part: int, parts: int) -> Iterator[RawBatch]:
    """Every parts-th batch starting at `part`: a file is split among workers batch by batch (each worker reads
    the whole file and keeps its stripe, so no worker needs to know the file's length in advance)."""
    if parts == 1:
        yield from batches
        return
    for i, raw in enumerate(batches):
        if i % parts == part:
            yield raw


def source_label(spec: DataSpec) -> str:
    return "synthetic" if spec.synthetic else Path(spec.source).name
