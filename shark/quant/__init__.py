"""F-Quantization (paper section 3.2, DESIGN section 5), pure numpy: row codecs with nearest or stochastic
rounding (codecs), eq. 7 priorities with exact lazy decay (priority), and eq. 8 tiers, fixed or from a byte budget
(tiers); and the MPE baseline's cache policy (mpe). The parameter-server row store (ps.store) builds its fp16/int8
pools, re-tiering and MPE cache on these."""

from shark.quant.codecs import (
    FP16_MAX,
    fp16_decode,
    fp16_decode_scaled,
    fp16_encode,
    fp16_encode_scaled,
    int8_decode,
    int8_encode,
)
from shark.quant.priority import PriorityRule
from shark.quant.tiers import (
    TIER_FP16,
    TIER_FP32,
    TIER_INT8,
    TIER_NAMES,
    BudgetPolicy,
    RowBytes,
    TierPolicy,
    default_t16_over_t8,
)

__all__ = ["FP16_MAX", "TIER_FP16", "TIER_FP32", "TIER_INT8", "TIER_NAMES", "BudgetPolicy", "PriorityRule",
           "RowBytes", "TierPolicy", "default_t16_over_t8", "fp16_decode", "fp16_decode_scaled", "fp16_encode", "fp16_encode_scaled",
           "int8_decode", "int8_encode"]
