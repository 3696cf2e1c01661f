"""Model folders installed atomically: built in a hidden staging folder beside their place and moved
into it in one rename, so that a reader never sees half a model (the Whisper model and the speaker
model that ``callqa model install`` assembles)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import ModelError


@contextlib.contextmanager
def model_folder(target: Path, what: str) -> Iterator[Path]:
    """Build a model folder in a hidden staging folder beside ``target``; when the block succeeds the
    staging folder replaces ``target`` in one rename (readers never see a half-built model), and when it
    fails nothing changes. Used by every model ``callqa model install`` assembles.

    Raises:
        ModelError: ``cannot {what} into {target}``: the folder cannot be written.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users
    except OSError as exc:
        raise ModelError(f"cannot {what} into {target}: {exc} (set CALLQA_MODELS_DIR to a writable folder)") from None
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except OSError as exc:
        raise ModelError(f"cannot {what} into {target}: {exc}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
