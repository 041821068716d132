"""Starting a command from a trained checkpoint (`shark compress --checkpoint`): the model comes from the
checkpoint's RUN.json; the data options default to what it records.

Options given on the command line that contradict the checkpoint are errors, not silently ignored: a model shape,
a storage mode, or synthetic training rows / seed other than the ones it was trained on (fine-tuning must read rows
past the trained ones). The fine-tuning settings (batch size, learning rates, threads) may differ.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from shark.train.config import TrainConfig, train_config_from_dict
from shark.train.data_plan import DataSpec

# option name -> TrainConfig field: the model and its storage, fixed by the checkpoint
MODEL_OPTIONS = {"embedding_dim": "embedding_dim", "bottom": "bottom", "top": "top", "capacity": "capacity",
                 "table_capacity": "capacities", "quant": "quant", "memory_budget": "memory_budget", "t8": "t8",
                 "t16": "t16", "retier_every": "retier_every", "rounding": "rounding", "mpe_cache": "mpe_cache",
                 "mpe_low": "mpe_low", "seed": "seed", "epochs": "epochs"}
FINE_TUNING_OPTIONS = ("batch_size", "lr_dense", "lr_embedding", "threads")


def read_checkpoint_run(directory: str, tag: str | None) -> dict[str, Any]:
    """The RUN.json of `tag` (default: the newest complete checkpoint) in `directory`. ValueError if none."""
    from ps.checkpoint import CheckpointError
    from shark.coordinator.run_manifest import latest_run_tag, read_run_manifest

    try:
        tag = tag or latest_run_tag(directory)
        if tag is None:
            raise ValueError(f"{directory}: no complete checkpoint (no tag with a valid RUN.json)")
        return {**read_run_manifest(directory, tag), "tag": tag}
    except CheckpointError as exc:
        raise ValueError(str(exc)) from None


def model_from_checkpoint(doc: dict[str, Any], given: TrainConfig, explicit: set[str]) -> TrainConfig:
    """The checkpoint's TrainConfig, with the fine-tuning settings given on the command line."""
    ckpt = train_config_from_dict(doc["train_config"])
    clash = [f"--{o.replace('_', '-')} (the checkpoint's model has {getattr(ckpt, f)!r})"
             for o, f in MODEL_OPTIONS.items() if o in explicit and getattr(given, f) != getattr(ckpt, f)]
    if clash:
        raise ValueError(f"the model comes from the checkpoint {doc['tag']}; these options contradict it: "
                         + ", ".join(clash))
    return replace(ckpt, **{o: getattr(given, o) for o in FINE_TUNING_OPTIONS if o in explicit})


def data_from_checkpoint(doc: dict[str, Any], given: DataSpec, explicit: set[str]) -> DataSpec:
    """The data spec: the checkpoint's recorded source and synthetic rows/seed unless given, and an error when a
    given one contradicts what the model was trained on."""
    rec = doc.get("data") or {}
    source = rec.get("source")
    if source is not None and given.source != source and not _same_file(given.source, source):
        if "data_source" in explicit:
            raise ValueError(f"the checkpoint {doc['tag']} was trained on {source!r}, not {given.source!r}")
        given = replace(given, source=source)
    if not given.synthetic or "train_rows" not in rec:  # a file, or a checkpoint that recorded no rows
        return given
    out = given
    for opt, field in (("train_rows", "train_rows"), ("synth_seed", "synth_seed")):
        if opt in explicit and getattr(given, field) != rec[field]:
            raise ValueError(f"the checkpoint {doc['tag']} was trained on synthetic rows with {field}="
                             f"{rec[field]}; --{opt.replace('_', '-')} {getattr(given, field)} would fine-tune on "
                             "other data than the rows past the trained ones")
        out = replace(out, **{field: rec[field]})
    if "test_rows" not in explicit:
        out = replace(out, test_rows=rec["test_rows"])
    return out


def _same_file(a: str, b: str) -> bool:
    import os

    return os.path.abspath(a) == os.path.abspath(b)
