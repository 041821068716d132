from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Compression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_NONE: _ClassVar[Compression]
    COMPRESSION_LZ4: _ClassVar[Compression]
COMPRESSION_NONE: Compression
COMPRESSION_LZ4: Compression

class Tensor(_message.Message):
    __slots__ = ("data", "dtype", "shape", "compression", "raw_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    RAW_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    compression: Compression
    raw_size: int
    def __init__(self, data: _Optional[bytes] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., compression: _Optional[_Union[Compression, str]] = ..., raw_size: _Optional[int] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("table", "ids", "read_only", "stored_precision")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    STORED_PRECISION_FIELD_NUMBER: _ClassVar[int]
    table: str
    ids: Tensor
    read_only: bool
    stored_precision: bool
    def __init__(self, table: _Optional[str] = ..., ids: _Optional[_Union[Tensor, _Mapping]] = ..., read_only: _Optional[bool] = ..., stored_precision: _Optional[bool] = ...) -> None: ...

class PullResponse(_message.Message):
    __slots__ = ("rows", "tiers", "rows_fp16", "rows_int8", "int8_scales")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FP16_FIELD_NUMBER: _ClassVar[int]
    ROWS_INT8_FIELD_NUMBER: _ClassVar[int]
    INT8_SCALES_FIELD_NUMBER: _ClassVar[int]
    rows: Tensor
    tiers: Tensor
    rows_fp16: Tensor
    rows_int8: Tensor
    int8_scales: Tensor
    def __init__(self, rows: _Optional[_Union[Tensor, _Mapping]] = ..., tiers: _Optional[_Union[Tensor, _Mapping]] = ..., rows_fp16: _Optional[_Union[Tensor, _Mapping]] = ..., rows_int8: _Optional[_Union[Tensor, _Mapping]] = ..., int8_scales: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("table", "ids", "grads", "c_pos", "c_neg", "worker_id", "seq")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    GRADS_FIELD_NUMBER: _ClassVar[int]
    C_POS_FIELD_NUMBER: _ClassVar[int]
    C_NEG_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    table: str
    ids: Tensor
    grads: Tensor
    c_pos: Tensor
    c_neg: Tensor
    worker_id: str
    seq: int
    def __init__(self, table: _Optional[str] = ..., ids: _Optional[_Union[Tensor, _Mapping]] = ..., grads: _Optional[_Union[Tensor, _Mapping]] = ..., c_pos: _Optional[_Union[Tensor, _Mapping]] = ..., c_neg: _Optional[_Union[Tensor, _Mapping]] = ..., worker_id: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class PullManyRequest(_message.Message):
    __slots__ = ("parts",)
    PARTS_FIELD_NUMBER: _ClassVar[int]
    parts: _containers.RepeatedCompositeFieldContainer[PullRequest]
    def __init__(self, parts: _Optional[_Iterable[_Union[PullRequest, _Mapping]]] = ...) -> None: ...

class PullManyResponse(_message.Message):
    __slots__ = ("parts",)
    PARTS_FIELD_NUMBER: _ClassVar[int]
    parts: _containers.RepeatedCompositeFieldContainer[PullResponse]
    def __init__(self, parts: _Optional[_Iterable[_Union[PullResponse, _Mapping]]] = ...) -> None: ...

class PushManyRequest(_message.Message):
    __slots__ = ("parts", "worker_id", "seq")
    PARTS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    parts: _containers.RepeatedCompositeFieldContainer[PushRequest]
    worker_id: str
    seq: int
    def __init__(self, parts: _Optional[_Iterable[_Union[PushRequest, _Mapping]]] = ..., worker_id: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class AssignRequest(_message.Message):
    __slots__ = ("table", "ids", "rows")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    table: str
    ids: Tensor
    rows: Tensor
    def __init__(self, table: _Optional[str] = ..., ids: _Optional[_Union[Tensor, _Mapping]] = ..., rows: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class AssignResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    def __init__(self, rows: _Optional[int] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("status",)
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[PushResponse.Status]
        STATUS_APPLIED: _ClassVar[PushResponse.Status]
        STATUS_DUPLICATE: _ClassVar[PushResponse.Status]
    STATUS_UNSPECIFIED: PushResponse.Status
    STATUS_APPLIED: PushResponse.Status
    STATUS_DUPLICATE: PushResponse.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: PushResponse.Status
    def __init__(self, status: _Optional[_Union[PushResponse.Status, str]] = ...) -> None: ...

class CreateTableRequest(_message.Message):
    __slots__ = ("name", "dim", "capacity", "optimizer", "learning_rate", "init_scale", "eps", "rounding", "seed", "beta1", "beta2", "quant")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    INIT_SCALE_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BETA1_FIELD_NUMBER: _ClassVar[int]
    BETA2_FIELD_NUMBER: _ClassVar[int]
    QUANT_FIELD_NUMBER: _ClassVar[int]
    name: str
    dim: int
    capacity: int
    optimizer: str
    learning_rate: float
    init_scale: float
    eps: float
    rounding: str
    seed: int
    beta1: float
    beta2: float
    quant: QuantConfig
    def __init__(self, name: _Optional[str] = ..., dim: _Optional[int] = ..., capacity: _Optional[int] = ..., optimizer: _Optional[str] = ..., learning_rate: _Optional[float] = ..., init_scale: _Optional[float] = ..., eps: _Optional[float] = ..., rounding: _Optional[str] = ..., seed: _Optional[int] = ..., beta1: _Optional[float] = ..., beta2: _Optional[float] = ..., quant: _Optional[_Union[QuantConfig, _Mapping]] = ...) -> None: ...

class QuantConfig(_message.Message):
    __slots__ = ("mode", "alpha", "beta", "t8", "t16", "budget_bytes", "budget_fraction", "t16_ratio", "retier_every", "mpe_low", "mpe_cache_fraction")
    MODE_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    T8_FIELD_NUMBER: _ClassVar[int]
    T16_FIELD_NUMBER: _ClassVar[int]
    BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FRACTION_FIELD_NUMBER: _ClassVar[int]
    T16_RATIO_FIELD_NUMBER: _ClassVar[int]
    RETIER_EVERY_FIELD_NUMBER: _ClassVar[int]
    MPE_LOW_FIELD_NUMBER: _ClassVar[int]
    MPE_CACHE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    mode: str
    alpha: float
    beta: float
    t8: float
    t16: float
    budget_bytes: int
    budget_fraction: float
    t16_ratio: float
    retier_every: int
    mpe_low: str
    mpe_cache_fraction: float
    def __init__(self, mode: _Optional[str] = ..., alpha: _Optional[float] = ..., beta: _Optional[float] = ..., t8: _Optional[float] = ..., t16: _Optional[float] = ..., budget_bytes: _Optional[int] = ..., budget_fraction: _Optional[float] = ..., t16_ratio: _Optional[float] = ..., retier_every: _Optional[int] = ..., mpe_low: _Optional[str] = ..., mpe_cache_fraction: _Optional[float] = ...) -> None: ...

class CreateTableResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class DropTableRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DropTableResponse(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: bool
    def __init__(self, dropped: _Optional[bool] = ...) -> None: ...

class TableStatsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class TableStats(_message.Message):
    __slots__ = ("name", "rows", "bytes_by_kind", "rows_by_tier")
    class BytesByKindEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RowsByTierEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BYTES_BY_KIND_FIELD_NUMBER: _ClassVar[int]
    ROWS_BY_TIER_FIELD_NUMBER: _ClassVar[int]
    name: str
    rows: int
    bytes_by_kind: _containers.ScalarMap[str, int]
    rows_by_tier: _containers.ScalarMap[str, int]
    def __init__(self, name: _Optional[str] = ..., rows: _Optional[int] = ..., bytes_by_kind: _Optional[_Mapping[str, int]] = ..., rows_by_tier: _Optional[_Mapping[str, int]] = ...) -> None: ...

class TableStatsResponse(_message.Message):
    __slots__ = ("tables", "process_rss_bytes")
    TABLES_FIELD_NUMBER: _ClassVar[int]
    PROCESS_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedCompositeFieldContainer[TableStats]
    process_rss_bytes: int
    def __init__(self, tables: _Optional[_Iterable[_Union[TableStats, _Mapping]]] = ..., process_rss_bytes: _Optional[int] = ...) -> None: ...

class CheckpointRequest(_message.Message):
    __slots__ = ("directory", "tag")
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    directory: str
    tag: str
    def __init__(self, directory: _Optional[str] = ..., tag: _Optional[str] = ...) -> None: ...

class CheckpointResponse(_message.Message):
    __slots__ = ("manifest_path", "bytes_written")
    MANIFEST_PATH_FIELD_NUMBER: _ClassVar[int]
    BYTES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    manifest_path: str
    bytes_written: int
    def __init__(self, manifest_path: _Optional[str] = ..., bytes_written: _Optional[int] = ...) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("directory", "tag")
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    directory: str
    tag: str
    def __init__(self, directory: _Optional[str] = ..., tag: _Optional[str] = ...) -> None: ...

class RestoreResponse(_message.Message):
    __slots__ = ("tables_restored",)
    TABLES_RESTORED_FIELD_NUMBER: _ClassVar[int]
    tables_restored: int
    def __init__(self, tables_restored: _Optional[int] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("status",)
    class ServingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SERVING_STATUS_UNSPECIFIED: _ClassVar[HealthResponse.ServingStatus]
        SERVING: _ClassVar[HealthResponse.ServingStatus]
        NOT_SERVING: _ClassVar[HealthResponse.ServingStatus]
    SERVING_STATUS_UNSPECIFIED: HealthResponse.ServingStatus
    SERVING: HealthResponse.ServingStatus
    NOT_SERVING: HealthResponse.ServingStatus
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: HealthResponse.ServingStatus
    def __init__(self, status: _Optional[_Union[HealthResponse.ServingStatus, str]] = ...) -> None: ...
