"""Tensor <-> numpy for columnar payloads: raw little-endian bytes plus dtype and shape.

Decoding is zero-copy (numpy.frombuffer over the message's bytes, read-only); a payload whose size
does not match its dtype and shape is rejected, so a corrupt batch fails loudly before training.
"""

from __future__ import annotations

import numpy as np

from gaelp.v1 import common_pb2

ALLOWED_DTYPES = frozenset({"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                            "bool"})
MAX_DIMS = 8


class TensorError(ValueError):
    """A Tensor message that cannot be a valid array."""


def to_tensor(array: np.ndarray) -> common_pb2.Tensor:
    array = np.asarray(array)
    if array.dtype.name not in ALLOWED_DTYPES:
        raise TensorError(f"dtype {array.dtype} is not allowed on the bus")
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return common_pb2.Tensor(
        dtype=array.dtype.name, shape=list(array.shape), data=np.ascontiguousarray(little).tobytes()
    )


def from_tensor(tensor: common_pb2.Tensor, name: str = "tensor") -> np.ndarray:
    if tensor.dtype not in ALLOWED_DTYPES:
        raise TensorError(f"{name}: unknown dtype {tensor.dtype!r}")
    shape = tuple(int(d) for d in tensor.shape)
    if len(shape) > MAX_DIMS or any(d < 0 for d in shape):
        raise TensorError(f"{name}: bad shape {shape}")
    dtype = np.dtype(tensor.dtype).newbyteorder("<")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if expected != len(tensor.data):
        raise TensorError(f"{name}: {len(tensor.data)} bytes do not fit dtype {tensor.dtype} shape {shape}")
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
