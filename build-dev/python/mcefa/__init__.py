"""Python binding of mcefa, the per-host transfer daemon for KV caches over EFA.

``mcefa.Client`` is the thin binding of libmcefa; ``mcefa.TransferEngine``
speaks Mooncake's TransferEngine API on top of it, so vLLM and SGLang run
unchanged (see docs/python.md). The Python process never loads libfabric:
the daemon does the networking.
"""
import os as _os

__version__ = "0.1.0"

from ._mcefa import Batch, Client, Error, READ, WRITE, PENDING, COMPLETED, FAILED, read_bytes, write_bytes
from .engine import (InnerTransferEngine, Read, SUPPORT_CUDA, SUPPORT_EFA, SUPPORT_HIP, SUPPORT_INTRA_NVLINK,
                     SUPPORT_MNNVL, TransferEngine, TransferNotify, TransferOpcode, Write)

__all__ = ["Batch", "Client", "Error", "READ", "WRITE", "PENDING", "COMPLETED", "FAILED", "read_bytes",
           "write_bytes", "TransferEngine", "TransferNotify", "TransferOpcode", "InnerTransferEngine", "Read",
           "Write", "SUPPORT_EFA", "SUPPORT_CUDA", "SUPPORT_HIP", "SUPPORT_MNNVL", "SUPPORT_INTRA_NVLINK",
           "shim_path"]


def shim_path():
    """Folder to put first on PYTHONPATH so that ``from mooncake.engine import
    TransferEngine`` resolves to mcefa's (only where Mooncake is not installed)."""
    return _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "mooncake_shim")
