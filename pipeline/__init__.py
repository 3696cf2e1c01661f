"""callqa's library: audio in, transcripts and findings out.

This package never imports Prefect (tests assert it); orchestration lives in ``flows/``.
"""

import logging

__version__ = "0.1.0"

logger = logging.getLogger("callqa")
