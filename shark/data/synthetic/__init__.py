"""Synthetic Criteo-like data with a known ground truth: the default data of `shark train` and the reference
for feature-importance experiments.

Schema: label, 13 integer counts (I1..I13), 26 categorical fields (C1..C26) whose 32-bit keys print as 8 hex
chars; empty = missing. Categorical value frequencies follow bounded power laws (a few values take most of the
mass, a long tail of rare ones), from 3 to 5M values per field. Labels ~ Bernoulli(p), p from a hidden teacher
(`teacher.py`) in which some fields matter a lot, some a little, some not at all, and some duplicate others,
so the true field ranking is known (`SyntheticCriteo.field_ranking`). Optional concept drift
(`SynthConfig.drift_at`): from a given row on, a second teacher and reversed value frequencies.

    gen = SyntheticCriteo(SynthConfig(seed=0))
    for raw in gen.batches(1_000_000, 4096, split="train"): ...
    gen.teacher_auc(200_000)          # the best AUC a model can expect on the test stream
    gen.write_tsv("train.tsv.gz", 1_000_000)
"""

from shark.data.synthetic.config import (
                                         DEFAULT_CAT,
                                         DEFAULT_DENSE,
                                         DEFAULT_INTERACTIONS,
                                         CatSpec,
                                         DenseSpec,
                                         SynthConfig,
)
from shark.data.synthetic.generator import SPLITS, FieldInfo, SyntheticCriteo
from shark.data.synthetic.sampling import PowerLaw
from shark.data.synthetic.writer import format_tsv

__all__ = [
                                         "DEFAULT_CAT",
                                         "DEFAULT_DENSE",
                                         "DEFAULT_INTERACTIONS",
                                         "SPLITS",
                                         "CatSpec",
                                         "DenseSpec",
                                         "FieldInfo",
                                         "PowerLaw",
                                         "SynthConfig",
                                         "SyntheticCriteo",
                                         "format_tsv",
]
