"""Reader for the Criteo Kaggle / Terabyte text format: `label \\t I1..I13 \\t C1..C26`, no header.

Empty field = missing. Plain or gzip (by magic bytes or .gz). Streamed through pyarrow in blocks of `block_size`
bytes, validated and converted vectorised per block (see shark.data.tabular for the shared machinery).

What counts as a bad line: a field count other than 40 (truncated line, 39 or 41 fields), an empty line, a label
other than 0/1, a dense value that is not a plain decimal number, a categorical value that is not 1-16 hex digits.
Dense values: integers as in the original data ("-1" included); "1.0" and other plain decimals ("2.5", "1e3") are
accepted too, because some re-exports of Criteo write integers as floats and the value ends up as float32 anyway.
"nan", "inf", hex, spaces or thousands separators are bad lines. The label follows the same number rule and must
equal 0 or 1 ("1.0" is accepted, "2" or "-1" is not).
"""

from __future__ import annotations

from typing import Iterator

from shark.data.bad_lines import BadLinePolicy, ReadReport
from shark.data.batch import RawBatch
from shark.data.files import PathLike
from shark.data.schema import CRITEO_SCHEMA
from shark.data.tabular import DEFAULT_BLOCK_SIZE, TextFormat, read_delimited

CRITEO_FIELDS = len(CRITEO_SCHEMA.columns)  # 40
CRITEO_FORMAT = TextFormat("\t", quoted=False, header=False, hex_keys=True, label_values=(0.0, 1.0),
                           label_text="0 or 1")


def read_criteo(path: PathLike, batch_size: int = 4096, policy: BadLinePolicy = BadLinePolicy(),
                report: ReadReport | None = None, *, block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[RawBatch]:
    """Stream a Criteo file as RawBatches of at most batch_size rows.

    labels float32 0/1; dense (B, 13) float32, NaN = missing; keys (B, 26) uint64 (the hex value, MISSING_KEY =
    missing); lines = 1-based physical line numbers. Bad lines follow `policy` and are counted in `report`.
    A missing/unreadable file raises DataError here; corrupt gzip data raises DataError when it is reached.
    """
    return read_delimited(path, CRITEO_SCHEMA, CRITEO_FORMAT, batch_size, policy, report, block_size)
