"""Tensor <-> numpy for columnar payloads: raw little-endian bytes plus dtype and shape.

Decoding is zero-copy (numpy.frombuffer over the message's bytes, read-only); a payload whose size
does not match its dtype and shape is rejected, so a corrupt batch fails loudly before training.
Sizes are computed in Python integers: a shape whose element count overflows int64 is rejected, it
cannot wrap around to a size that happens to match.
"""

from __future__ import annotations

import math

import numpy as np

from gaelp.v1 import common_pb2

ALLOWED_DTYPES = frozenset({"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                            "bool"})
MAX_DIMS = 8
MAX_DIM_SIZE = 2**31 - 1  # numpy needs each extent to fit its index type


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


def check_tensor(tensor: common_pb2.Tensor, name: str = "tensor") -> tuple[int, ...]:
    """The tensor's shape once dtype, shape and byte size agree; TensorError otherwise."""
    if tensor.dtype not in ALLOWED_DTYPES:
        raise TensorError(f"{name}: unknown dtype {tensor.dtype[:40]!r}")
    shape = tuple(int(d) for d in tensor.shape)
    if len(shape) > MAX_DIMS or any(d < 0 or d > MAX_DIM_SIZE for d in shape):
        raise TensorError(f"{name}: bad shape {shape[:MAX_DIMS + 1]}")
    expected = math.prod(shape) * np.dtype(tensor.dtype).itemsize
    if expected != len(tensor.data):
        raise TensorError(f"{name}: {len(tensor.data)} bytes do not fit dtype {tensor.dtype} shape {shape}")
    return shape


def from_tensor(tensor: common_pb2.Tensor, name: str = "tensor") -> np.ndarray:
    shape = check_tensor(tensor, name)
    dtype = np.dtype(tensor.dtype).newbyteorder("<")
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
