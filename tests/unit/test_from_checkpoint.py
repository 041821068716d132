"""`shark compress --checkpoint`: the model from the checkpoint, data defaults from what it recorded, and clear
errors for options that contradict it (pure: no cluster)."""

from __future__ import annotations

import pytest

from shark.cli.from_checkpoint import data_from_checkpoint, model_from_checkpoint
from shark.train.config import TrainConfig
from shark.train.data_plan import DataSpec

TRAINED = TrainConfig(embedding_dim=32, quant="fq", memory_budget=0.5, lr_dense=2e-3)
DOC = {"tag": "ckpt-7", "train_config": TRAINED.to_dict(),
       "data": {"source": "synthetic", "train_rows": 300_000, "test_rows": 50_000, "synth_seed": 3, "stream": False}}


def test_the_model_comes_from_the_checkpoint_and_fine_tuning_settings_may_differ():
    given = TrainConfig(embedding_dim=16, batch_size=1024, lr_embedding=0.1)  # only the latter two were typed
    got = model_from_checkpoint(DOC, given, explicit={"batch_size", "lr_embedding"})
    assert got.embedding_dim == 32 and got.quant == "fq" and got.memory_budget == 0.5 and got.lr_dense == 2e-3
    assert got.batch_size == 1024 and got.lr_embedding == 0.1
    assert model_from_checkpoint(DOC, TrainConfig(embedding_dim=32), {"embedding_dim"}) == TRAINED  # agrees: fine
    with pytest.raises(ValueError, match=r"--embedding-dim \(the checkpoint's model has 32\).*--quant"):
        model_from_checkpoint(DOC, TrainConfig(embedding_dim=8, quant="int8"), {"embedding_dim", "quant"})


def test_data_defaults_to_the_recorded_rows_and_refuses_other_training_rows():
    spec = data_from_checkpoint(DOC, DataSpec(), explicit=set())
    assert (spec.train_rows, spec.test_rows, spec.synth_seed) == (300_000, 50_000, 3)
    assert data_from_checkpoint(DOC, DataSpec(test_rows=10_000), {"test_rows"}).test_rows == 10_000
    with pytest.raises(ValueError, match="train_rows=300000"):
        data_from_checkpoint(DOC, DataSpec(train_rows=100_000), {"train_rows"})
    with pytest.raises(ValueError, match="synth_seed=3"):
        data_from_checkpoint(DOC, DataSpec(synth_seed=0), {"synth_seed"})
    with pytest.raises(ValueError, match="trained on 'synthetic', not 'day_0.gz'"):
        data_from_checkpoint(DOC, DataSpec(source="day_0.gz"), {"data_source"})


def test_a_file_checkpoint_gives_its_source_and_an_old_checkpoint_leaves_the_options():
    doc = {**DOC, "data": {"source": "/data/day_0.gz", "test_path": None, "test_fraction": 0.2, "split_seed": 0}}
    assert data_from_checkpoint(doc, DataSpec(), set()).source == "/data/day_0.gz"
    old = {**DOC, "data": {"source": "synthetic"}}  # written before the rows were recorded
    assert data_from_checkpoint(old, DataSpec(train_rows=5000), {"train_rows"}).train_rows == 5000
