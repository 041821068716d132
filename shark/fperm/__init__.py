"""F-Permutation (paper section 3.1): score every field (the dense-feature vector included) by the first-order
Taylor expansion of its permutation error, from one forward and one backward pass per batch, plus the baselines
(Permutation, exact permutation, random order) and ranking tools.

    batches = materialise(trainer, raw_batches)
    s = taylor_scores(trainer.model, batches)          # TaylorConfig("abs"): one pass
    s.ranking()                                  # most important first
"""

from shark.fperm.config import VARIANTS, PermutationConfig, TaylorConfig
from shark.fperm.curve import KeptCurve, auc_vs_fields_kept, drop_order, drop_predictions, kept_curve
from shark.fperm.exact import exact_errors, exact_permutation_scores
from shark.fperm.inputs import ScoringBatch, materialise, trainer_batches
from shark.fperm.permutation import permutation_scores, permutation_totals
from shark.fperm.ranking import average_ranks, bottom_positions, random_scores, spearman, spearman_with
from shark.fperm.scores import FieldScores
from shark.fperm.taylor import (FieldScoreAccumulator, FieldSums, field_means, per_sample_gradients, shuffles,
                                taylor_scores, taylor_terms)

__all__ = ["VARIANTS", "FieldScoreAccumulator", "FieldScores", "FieldSums", "KeptCurve", "PermutationConfig",
           "ScoringBatch", "TaylorConfig", "auc_vs_fields_kept", "average_ranks", "bottom_positions", "drop_order",
           "drop_predictions", "exact_errors", "exact_permutation_scores", "field_means", "kept_curve", "materialise",
           "per_sample_gradients", "permutation_scores", "permutation_totals", "random_scores", "shuffles", "spearman",
           "spearman_with", "taylor_scores", "taylor_terms", "trainer_batches"]
