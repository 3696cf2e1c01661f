"""Every error the library raises on purpose: one base class, one subclass per kind of bad input.

Each error knows the pipeline ``stage`` it belongs to, so the ``errors`` table can say where a
recording failed without parsing messages.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of callqa's own errors. ``stage`` names the pipeline step that failed."""

    stage = "pipeline"


class ConfigError(PipelineError):
    """The configuration file or an option in it is invalid."""

    stage = "config"


class ManifestError(PipelineError):
    """manifest.csv cannot be used at all (missing column, unreadable file)."""

    stage = "manifest"


class ManifestRowError(ManifestError):
    """One row of manifest.csv is invalid; the other rows are still processed."""


class InputError(PipelineError):
    """The input folder itself is unusable (missing, not a folder, unreadable)."""

    stage = "discover"


class NotInManifestError(InputError):
    """An audio file lies in the input folder but the manifest does not list it."""


class TransientInputError(PipelineError):
    """Reading a recording failed in a way that may pass (I/O error, timeout, stale network share).

    The nightly flow retries these, with growing delays; it never retries a bad recording.
    """

    stage = "read"


class AudioDecodeError(PipelineError):
    """The file is not audio, is corrupt, or has no audio stream."""

    stage = "decode"


class UnsupportedAudioError(AudioDecodeError):
    """The audio decodes but cannot be processed (e.g. more than two channels)."""


class ModelError(PipelineError):
    """The speech model cannot be found, assembled or loaded."""

    stage = "model"


class ModelChecksumError(ModelError):
    """The bundled model's weights do not match the published checksum."""


class TranscriptionError(PipelineError):
    """The speech model failed on a recording."""

    stage = "transcribe"


class StoreError(PipelineError):
    """Parquet output cannot be written or does not match its schema."""

    stage = "store"


class SchemaMismatchError(StoreError):
    """A table about to be written does not match its declared schema."""
