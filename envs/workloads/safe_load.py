"""Reading pickled files a user hands over without running their code.

A pickle is a program: unpickling a crafted file can call any function it names
(``os.system`` included). Every file the product unpickles is user input (a ``--data``
folder, a ``--checkpoint``, an export directory), so none is read with plain ``pickle``:

- ``load_data_pickle`` reads data files (CIFAR-10's python batches) with an unpickler
  that builds only builtin containers, bytes, str, numbers and numpy arrays, and refuses
  every other name a file asks for, with ``UnsafePickleError`` naming the file and it;
- ``load_torch_file`` reads torch files (state dicts) with ``torch.load(...,
  weights_only=True)``, torch's own restricted unpickler, and keeps torch's warnings
  about the file (an unusual pickle protocol, say) off the terminal: a refused file is
  reported once, as the caller's error.
"""

from __future__ import annotations

import codecs
import pickle
import warnings
from pathlib import Path
from typing import Any


class UnsafePickleError(ValueError):
    """A pickled data file asks for something other than plain data; it was not loaded."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 only)."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin-1", errors)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The numpy names a pickled array needs, under numpy 1's and numpy 2's module names."""
    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    numeric = np._core.numeric if hasattr(np, "_core") else np.core.numeric
    out: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for package in ("numpy.core", "numpy._core"):
        out[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        out[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):  # pickle protocol 5's array constructor
            out[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return out


#: Builtins a data pickle may name (containers and numbers that have no opcode of their own).
_BUILTINS = {"set": set, "frozenset": frozenset, "bytearray": bytearray, "complex": complex}


class DataUnpickler(pickle.Unpickler):
    """An unpickler that admits only plain data: the builtin containers, bytes, str and
    numbers (which pickle builds without naming any function), the few builtins that
    need a name (set, frozenset, bytearray, complex), latin-1 bytes of protocol-2 files,
    and numpy arrays, dtypes and scalars. Anything else is ``UnsafePickleError``."""

    def __init__(self, file: Any, *, where: str, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.where = where
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        """The object a pickle names, if it is plain data; ``UnsafePickleError`` else."""
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return _BUILTINS[name]
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        found = self._allowed.get((module, name))
        if found is not None:
            return found
        raise UnsafePickleError(
            f"{self.where} is refused: it asks to load {module}.{name}, which plain data "
            "never needs (a data pickle may hold only builtin containers, bytes, str, "
            "numbers and numpy arrays); nothing in it was run"
        )


def load_data_pickle(path: str | Path, *, what: str = "data file") -> Any:
    """The content of a pickled data file, read with ``DataUnpickler``.

    ``UnsafePickleError`` (a ``ValueError``) if it asks for anything but plain data;
    ``ValueError`` naming the file if it is not a readable pickle.
    """
    p = Path(path)
    where = f"{what} {str(p)!r}"
    try:
        with open(p, "rb") as fh:
            return DataUnpickler(fh, where=where, encoding="latin1").load()
    except UnsafePickleError:
        raise
    except MemoryError as exc:
        raise ValueError(f"{where} asks for more memory than this machine has") from exc
    except OSError as exc:
        raise ValueError(f"cannot read {where}: {exc.strerror or exc}") from exc
    except Exception as exc:  # UnpicklingError, EOFError, a bad array: not a data pickle
        raise ValueError(f"{where} is not a readable pickle: {type(exc).__name__}: {exc}") from exc


def load_torch_file(path: str | Path, *, map_location: str = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with torch's warnings about the file kept
    quiet (its error, if any, is the caller's to report)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location=map_location, weights_only=True)


def torch_load_reason(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in one line.

    Torch's message wraps the reason (``Trying to load unsupported GLOBAL posix.system``,
    ``Unsupported operand 149``) in paragraphs of advice, one of which suggests loading
    the file with ``weights_only=False``: exactly what must not be done with a file one
    does not trust. Only the reason is kept.
    """
    text = str(exc)
    if "Weights only load failed" not in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[0] if lines else type(exc).__name__
    keep = []
    for para in text.split("\n\n")[1:]:
        para = " ".join(para.split())
        if not para or para.startswith("Check the documentation"):
            continue
        keep.append(para.split("WeightsUnpickler error:")[-1].strip())
    reason = " ".join(p for p in keep if p) or "it holds more than tensors"
    return f"the weights-only loader refused it ({reason})"
