"""Prefect orchestration and the command line, thin over the ``pipeline`` library."""
