"""Content hashes: of recordings (what an incremental night compares) and of model weights (what the
bundled model is verified against)."""

from __future__ import annotations

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
