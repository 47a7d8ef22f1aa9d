"""File I/O every kdface writer and loader goes through: atomic writes and safe loading."""

from kdface.io.atomic import atomic_path, write_bytes, write_json, write_text
from kdface.io.safe_load import UnsafeFileError, load_keras_model, load_model, restricted_pickle_load

__all__ = [
    "UnsafeFileError",
    "atomic_path",
    "load_keras_model",
    "load_model",
    "restricted_pickle_load",
    "write_bytes",
    "write_json",
    "write_text",
]
