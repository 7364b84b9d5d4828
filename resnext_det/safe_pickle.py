"""Unpickling data files without running what they name.

A pickle can name any importable callable to run while it loads, so the data pickles this project
reads (detectron2's proposal files, CIFAR's python batches) go through ``RestrictedUnpickler``:
plain containers, numbers, strings and bytes load as usual, and a global is rebuilt only if it is
on the caller's list (numpy's arrays, dtypes and scalars, ``NUMPY_GLOBALS``); anything else is an
``UnpicklingError`` that says what the file asked for.
"""

from __future__ import annotations

import pickle

__all__ = ["NUMPY_GLOBALS", "PROTOCOL2_BYTES", "RestrictedUnpickler"]

#: What rebuilds numpy arrays, dtypes and scalars (numpy 1 and 2 module names; ``_frombuffer``
#: is pickle protocol 5's array path).
NUMPY_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
)


#: What a protocol-2 pickle written by Python 3 rebuilds its bytes with (numpy's array data among
#: them; files written by Python 2 hold plain strings): CIFAR's batches and Detectron's models
#: re-pickled by Python 3.
PROTOCOL2_BYTES = frozenset({("_codecs", "encode")})


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that rebuilds only the ``allowed`` (module, name) globals; ``holds``
    completes the refusal's message ("a proposal file holds only numpy arrays and ids")."""

    def __init__(
        self, file, allowed=NUMPY_GLOBALS, holds: str = "this file holds only numpy arrays", **kwargs
    ):
        super().__init__(file, **kwargs)
        self.allowed, self.holds = frozenset(allowed), holds

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"it asks to load {module}.{name}; {self.holds}")
        return super().find_class(module, name)
