"""mooncake.engine backed by mcefad (see mcefa.engine)."""
from mcefa.engine import (InnerTransferEngine, Read, SUPPORT_CUDA, SUPPORT_EFA, SUPPORT_HIP,  # noqa: F401
                         SUPPORT_INTRA_NVLINK, SUPPORT_MNNVL, TransferEngine, TransferNotify, TransferOpcode,
                         Write)
