"""Process-wide settings Prefect must see before it is imported: local, quiet, no telemetry."""

from __future__ import annotations

import os
from pathlib import Path


def prepare_prefect_env(state_dir: str | Path, debug: bool = False) -> Path:
    """Point Prefect at a home inside callqa's state folder and turn its analytics off.

    An explicitly configured ``PREFECT_API_URL`` (a separately started server) is left alone; without
    one, Prefect starts its embedded temporary server on first use. Prefect's own log lines (with the
    tracebacks of a failed flow run) are shown only with ``debug``: callqa says what went wrong in one
    line, and the run summary and the Prefect UI keep the details.

    Returns:
        The Prefect home folder.
    """
    home = Path(state_dir).resolve() / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if debug else "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    return Path(os.environ["PREFECT_HOME"])
