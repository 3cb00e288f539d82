"""mooncake.engine backed by mcefad (see mcefa.engine)."""
from mcefa.engine import TransferEngine, TransferNotify, TransferOpcode  # noqa: F401
