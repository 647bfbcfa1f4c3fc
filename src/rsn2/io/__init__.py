"""Safe model files (safetensors + JSON) and atomic writes."""

from rsn2.io.atomic import atomic_target, atomic_write_bytes
from rsn2.io.model_file import FORMAT_VERSION, checksums, load_model, read_metadata, save_model, verify_file

__all__ = [
    "FORMAT_VERSION",
    "atomic_target",
    "atomic_write_bytes",
    "checksums",
    "load_model",
    "read_metadata",
    "save_model",
    "verify_file",
]
