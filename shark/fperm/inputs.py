"""What every scorer consumes: per batch, the dense features, the looked-up rows and the labels as tensors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from shark.data.batch import RawBatch
from shark.train.local import LocalTrainer


@dataclass(frozen=True)
class ScoringBatch:
    dense: torch.Tensor  # (B, n_dense) float32, transformed
    emb: torch.Tensor  # (B, T, d) rows of the model's active tables, in `model.tables` order
    labels: torch.Tensor  # (B,) float32 0/1

    def __post_init__(self) -> None:
        b = self.labels.shape[0]
        if self.dense.shape[0] != b or self.emb.shape[0] != b or self.emb.dim() != 3:
            raise ValueError(f"batch shapes disagree: dense {tuple(self.dense.shape)}, emb {tuple(self.emb.shape)}, "
                             f"labels {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def trainer_batches(trainer: LocalTrainer, raws: Iterable[RawBatch]) -> Iterator[ScoringBatch]:
    """Transform and look up raw batches with a local trainer's store (evaluation mode: nothing is created)."""
    for raw in raws:
        batch = trainer.transform(raw)
        _, _, emb = trainer._rows(batch.ids, train=False)
        yield ScoringBatch(torch.from_numpy(batch.dense), emb, torch.from_numpy(batch.labels))


def materialise(trainer: LocalTrainer, raws: Iterable[RawBatch]) -> list[ScoringBatch]:
    """The scoring data held in memory (re-iterable, so two-pass scorers and several methods can share it)."""
    return list(trainer_batches(trainer, raws))
