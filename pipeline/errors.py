"""Every error the library raises on purpose: one base class, one subclass per kind of bad input.

Each error knows the pipeline ``stage`` it belongs to, so the ``errors`` table can say where a
recording failed without parsing messages, and the command line prints ``callqa: error (STAGE): …``
and exits 1 for any of them. Messages say what is wrong and, where there is one, what to do about it.

The tree::

    PipelineError
    ├── UsageError                 a command line that cannot be run as given
    ├── ValidationError            a file of options has problems (each "file:line: message")
    │   ├── ConfigError            callqa.toml or a CALLQA_* variable
    │   ├── LexiconError           lexicons/*.txt or rules.toml
    │   ├── RubricError            the scoring rubric
    │   └── HallucinationListError the hallucination guard's phrase list
    ├── InputError                 the input folder, or a file a command was given
    │   ├── NotInManifestError     an audio file the manifest does not list
    │   ├── LinkError              a symbolic link callqa will not follow (outside, broken, a folder)
    │   ├── DialogueError          a `callqa rules test` dialogue
    │   ├── ExampleSelectionError  `callqa examples` asked for something the results lack
    │   └── ClipError              the audio around a finding cannot be cut
    ├── ManifestError              manifest.csv as a whole
    │   └── ManifestRowError       one row of it
    ├── TransientInputError        a read that may work later (retried)
    ├── AudioDecodeError           not audio, corrupt, empty
    │   └── UnsupportedAudioError  decodes, but cannot be processed (3+ channels)
    ├── ModelError                 the speech model cannot be found, assembled or loaded
    │   └── ModelChecksumError
    ├── TranscriptionError         the speech model failed on a recording
    ├── TranscriptFileError        an imported transcript cannot be read (``--engine import``)
    ├── RuleError                  a rule crashed on a call: the call is not scored
    ├── StoreError                 Parquet output cannot be read or written
    │   ├── SchemaMismatchError
    │   └── OutputBusyError        another night is writing the same output folder
    ├── ResultsNotFoundError       no callqa output where one was expected
    │   └── CallNotFoundError
    └── CJKFontMissingError        no font with Chinese characters for the charts
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of callqa's own errors. ``stage`` names the pipeline step that failed."""

    stage = "pipeline"


class UsageError(PipelineError):
    """A command line that cannot be run as given (a missing argument, a bad value)."""

    stage = "usage"


class ValidationError(PipelineError):
    """A file of options has one or more problems; ``problems`` holds ``file:line: message`` strings.

    All problems of a file are collected before this is raised, so that a user fixes them in one go.
    One problem is the whole message; several are listed one per line under a count.
    """

    stage = "options"
    what = "options"

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems in the {self.what}:\n  " + "\n  ".join(self.problems)
        super().__init__(message)


class ConfigError(ValidationError):
    """The configuration file or an option in it (or in a ``CALLQA_*`` variable) is invalid."""

    stage = "config"
    what = "configuration"


class LexiconError(ValidationError):
    """One or more lexicon files (phrase lists, ``rules.toml``) are invalid."""

    stage = "lexicon"
    what = "lexicons"


class RubricError(ValidationError):
    """The scoring rubric is invalid."""

    stage = "rubric"
    what = "rubric"


class HallucinationListError(ValidationError):
    """The hallucination guard's phrase list (``[guard] phrases_file``) is invalid."""

    stage = "guard"
    what = "hallucination list"


class InputError(PipelineError):
    """The input folder itself is unusable (missing, not a folder, unreadable), or a file given to a
    command cannot be used."""

    stage = "discover"


class NotInManifestError(InputError):
    """An audio file lies in the input folder but the manifest does not list it."""


class LinkError(InputError):
    """An input is a symbolic link callqa does not follow: to a file outside the input folder, broken,
    or to a folder."""


class DialogueError(InputError):
    """A dialogue file (``callqa rules test``) cannot be read, or a line of it is not ``speaker: text``."""

    stage = "dialogue"


class ExampleSelectionError(InputError):
    """``callqa examples`` asked for an unknown rule, kind or severity."""

    stage = "examples"


class ClipError(InputError):
    """The audio around a finding cannot be cut: the recording does not decode or is too short."""

    stage = "examples"


class ReviewError(InputError):
    """A review action that cannot be saved: an unknown call or rule, a result with nothing to
    review, a verdict or appeal status that does not exist, no reviewer's name."""

    stage = "review"


class ManifestError(PipelineError):
    """manifest.csv cannot be used at all (missing column, unreadable file)."""

    stage = "manifest"


class ManifestRowError(ManifestError):
    """One row of manifest.csv is invalid; the other rows are still processed."""


class TransientInputError(PipelineError):
    """Reading a recording failed in a way that may pass (I/O error, timeout, stale network share).

    The nightly run retries these, with growing delays; it never retries a bad recording.
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


class TranscriptFileError(PipelineError):
    """An imported transcript (``[asr] engine = "import"``) is not JSON, not a known format, or says
    something impossible (an end before its start, an unknown speaker, a failed recognition task)."""

    stage = "import"


class RuleError(PipelineError):
    """A rule crashed on a call. The call is recorded as failed at stage ``rules`` and not scored (a
    crashing rule must never count as passed or not applicable); ``callqa rescore`` scores it once the
    rule is fixed."""

    stage = "rules"


class StoreError(PipelineError):
    """Parquet output cannot be read or written."""

    stage = "store"


class SchemaMismatchError(StoreError):
    """A table about to be written, or a file being read, does not match its declared schema."""


class OutputBusyError(StoreError):
    """Another callqa night or rescore is writing the same output folder."""


class ResultsNotFoundError(PipelineError):
    """The folder holds no callqa output (or none in the period asked for)."""

    stage = "results"


class CallNotFoundError(ResultsNotFoundError):
    """No call with this id in the results loaded."""


class CJKFontMissingError(PipelineError):
    """No font with Chinese characters is installed: charts would show boxes instead of labels."""

    stage = "charts"
