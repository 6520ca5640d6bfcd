"""Read a TensorFlow checkpoint (the V2 "tensor bundle": ``NAME.index`` + ``NAME.data-0000K-of-0000N``)
into NumPy arrays, without TensorFlow.

Hand-written because the only maintained reader is TensorFlow itself (tensorflow-cpu 2.21: 1.6 GB
installed, 49 s from a local index, to read a few dozen arrays once; docs/google-bert.md), and the
format is small:
the index is a LevelDB table (Google's SSTable: blocks of prefix-compressed key/value entries, an
index block, a 48-byte footer) mapping each variable name to a ``BundleEntryProto`` (dtype, shape,
shard, offset, size); the data files hold the raw little-endian bytes. References:
leveldb/doc/table_format.md, tensorflow/core/protobuf/tensor_bundle.proto.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from distill.errors import DistillInputError

_MAGIC = 0xDB4775248B80FB57  # LevelDB table magic, the footer's last 8 bytes
# tensorflow/core/framework/types.proto DataType -> NumPy
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64, 10: np.bool_,
           17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message: ints for varint/fixed, bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"protobuf wire type {wire} is not used by tensor bundles")
        yield number, wire, value


def _block(data: bytes, offset: int, size: int, path: Path) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of one table block (prefix-compressed keys, restart array at the end)."""
    if data[offset + size] != 0:  # the block trailer's compression byte: TF writes bundles uncompressed
        raise DistillInputError(f"{path}: a compressed table block (type {data[offset + size]}); re-save the checkpoint "
                                f"with TensorFlow's default (uncompressed) bundle writer")
    block = data[offset:offset + size]
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        n_value, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + n_value]))
        pos += n_value
    return entries


def _entries(index: Path) -> dict[str, bytes]:
    """{variable name: serialized BundleEntryProto} of a bundle's index table (the header, key "", left out)."""
    data = index.read_bytes()
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != _MAGIC:
        raise DistillInputError(f"{index} is not a TensorFlow checkpoint index (no table footer); give the "
                                f"bert_model.ckpt.index that TensorFlow wrote")
    footer = data[len(data) - 48:]
    _, pos = _varint(footer, 0)  # metaindex handle (unused)
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    out = {}
    for _, handle in _block(data, index_offset, index_size, index):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        out.update((k.decode(), v) for k, v in _block(data, offset, size, index) if k)
    return out


def read_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """{variable name: array} of the checkpoint at ``prefix`` (``.../bert_model.ckpt``)."""
    prefix = Path(prefix)
    index = prefix.with_name(prefix.name + ".index")
    if not index.is_file():
        raise DistillInputError(f"{index} not found; a TensorFlow checkpoint is NAME.index + NAME.data-*-of-*")
    shards: dict[int, bytes] = {}
    out = {}
    for name, proto in _entries(index).items():
        entry = {number: value for number, _, value in _fields(proto)}
        shape = [next(v for n, _, v in _fields(dim) if n == 1) if any(n == 1 for n, _, _ in _fields(dim)) else 0
                 for n, _, dim in _fields(entry.get(2, b"")) if n == 2]
        dtype = _DTYPES.get(entry.get(1, 0))
        if dtype is None:
            raise DistillInputError(f"{index}: variable {name} has TensorFlow dtype {entry.get(1)}, which this reader "
                                    f"does not read (numeric tensors only)")
        shard = entry.get(3, 0)
        if shard not in shards:
            files = sorted(prefix.parent.glob(f"{prefix.name}.data-{shard:05d}-of-*"))
            if not files:
                raise DistillInputError(f"{prefix}.data-{shard:05d}-of-* is missing beside {index}")
            shards[shard] = files[0].read_bytes()
        offset, size = entry.get(4, 0), entry.get(5, 0)
        array = np.frombuffer(shards[shard], dtype=np.dtype(dtype).newbyteorder("<"), count=size // np.dtype(dtype).itemsize,
                              offset=offset)
        if array.size != int(np.prod(shape)):
            raise DistillInputError(f"{index}: variable {name} holds {array.size} values for shape {shape}; "
                                    f"the checkpoint is truncated or corrupt")
        out[name] = array.reshape(shape).copy()
    return out
