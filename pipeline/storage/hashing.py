"""Content hashes: of recordings (what an incremental night compares) and of model weights (what the
bundled model is verified against)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


def file_sha256(path: str | Path, chunk_size: int = 1 << 22) -> str:
    """sha256 of a file's bytes, read in chunks.

    Raises:
        OSError: the file cannot be read (callers decide whether that may pass or is final).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: str | Path) -> str:
    """sha256 of a model file, hashed once per process for a file of this size and modification time
    (every batch of a night verifies its models; hashing them each time would cost seconds).

    Raises:
        OSError: the file cannot be read.
    """
    stat = Path(path).stat()
    return _cached_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)
