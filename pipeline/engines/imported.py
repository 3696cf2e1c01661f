"""The ``import`` engine: transcripts another recogniser already wrote, checked and scored as they are.

One JSON file per call (``call01.json``), found as recordings are: listed by ``manifest.csv`` (its
``file`` column names the transcript, or a recording with the transcript beside it under the same
name), or, without a manifest, every ``*.json`` of the folder. A recording beside a transcript (same
name, any audio ending) is optional: when there, it gives the call's format and length and the
review page and training clips play it.

Two formats are read, told apart by their content:

- **callqa's own** (``"format": "callqa-transcript"``, version 1; docs/inputs-and-outputs.md): times
  in seconds, each utterance with ``speaker`` (agent, customer, other, unknown) or ``channel`` (0/left,
  1/right: the manifest's ``agent_channel`` says whose), ``start_s``, ``end_s``, ``text``, optional
  ``words`` (``word``, ``start_s``, ``end_s``, ``prob``), confidence statistics (``avg_logprob``,
  ``no_speech_prob``), ``checks`` (phrases checked on the audio), ``numbers`` (the numbers said: their
  offsets in the text and digits' keyed code, as exported; without them they are marked from the
  text); optional ``voice_activity``,
  ``duration_s``, ``language`` and ``roles``. ``callqa export`` writes it from a results folder.
- **Alibaba Cloud recording-file recognition** (录音文件识别, the GetTaskResult response or its
  ``Result``): ``Sentences`` with ``ChannelId``, ``BeginTime``, ``EndTime`` (milliseconds) and
  ``Text``; ``Words`` (``Word``, ``BeginTime``, ``EndTime``, ``ChannelId``) when word timing was asked
  for; ``BizDuration``; a ``StatusText`` other than SUCCESS is an error.

Statistics an engine does not give stay empty (None), and the rules that read them say so
(``dialect.putonghua`` scores no utterance without the decoder's confidence). Voice activity, where a
transcript has none, is the utterances' spans (holds and silences are then measured between what was
said). Everything else is what a transcribing night does: masking before anything is stored, the same
rows, rules, scores and review. A transcript that cannot be read is an ``errors`` row naming the file
and what is wrong, never a silent skip.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import CallqaConfig
from ..errors import PipelineError, TranscriptFileError, TransientInputError
from ..records import (ROLES_CHANNELS, ROLES_NONE, SPEAKER_AGENT, SPEAKER_CUSTOMER, SPEAKER_OTHER, SPEAKER_UNKNOWN,
                       STATUS_ERROR, STATUS_OK, CallResult, ErrorRecord, NumberMark, PhraseCheck, Recording,
                       SpeechRegion, Utterance, Word)
from ..storage.hashing import file_sha256
from ..text import normalise_text
from ..transcribe.discover import Discovery, discover_recordings
from ..transcribe.privacy import mask_result
from ..transcribe.recording import TRANSIENT_ERRNOS

FORMAT_NAME = "callqa-transcript"
FORMAT_VERSION = 1
TRANSCRIPT_ENDING = ".json"
LABEL = "import"
SPEAKERS = (SPEAKER_AGENT, SPEAKER_CUSTOMER, SPEAKER_OTHER, SPEAKER_UNKNOWN)
CHANNEL_NAMES = {"0": 0, "left": 0, "1": 1, "right": 1}
ALIBABA_DONE = ("SUCCESS", "SUCCESS_WITH_NO_VALID_FRAGMENT")


@dataclass
class Transcript:
    """A transcript file read, before it becomes a CallResult (texts as written, times in seconds)."""

    utterances: list[Utterance] = field(default_factory=list)
    voice_activity: list[SpeechRegion] = field(default_factory=list)
    duration_s: float | None = None
    channels: int | None = None
    agent_language: str | None = None
    agent_language_prob: float | None = None
    agent_zh_prob: float | None = None
    roles_method: str | None = None
    roles_confidence: float | None = None


def _number(value: Any, what: str, scale: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TranscriptFileError(f"{what} is {value!r}, not a number")
    return round(float(value) * scale, 3)


def _optional_number(value: Any, what: str) -> float | None:
    return None if value is None else _number(value, what)


def _span(item: dict, start_key: str, end_key: str, what: str, scale: float = 1.0) -> tuple[float, float]:
    start, end = _number(item.get(start_key), f"{what} {start_key}", scale), _number(item.get(end_key), f"{what} {end_key}", scale)
    if start < 0 or end < start:
        raise TranscriptFileError(f"{what} runs from {start:g} s to {end:g} s")
    return start, end


def _speaker_of_channel(channel: Any, recording: Recording, what: str) -> str:
    index = CHANNEL_NAMES.get(str(channel).strip().lower())
    if index is None:
        raise TranscriptFileError(f"{what} channel is {channel!r}: 0/left or 1/right")
    if recording.agent_channel == "mono":
        return SPEAKER_UNKNOWN
    agent = 0 if recording.agent_channel == "left" else 1
    return SPEAKER_AGENT if index == agent else SPEAKER_CUSTOMER


def _speaker(value: Any, what: str) -> str:
    """A speaker as callqa's format names it: agent, customer, other, unknown (or a mono call's voiceN)."""
    speaker = str(value if value is not None else "").strip().lower()
    if speaker not in SPEAKERS and not speaker.startswith("voice"):
        raise TranscriptFileError(f"{what} speaker is {value!r}: one of {', '.join(SPEAKERS)}")
    return speaker


def _words(items: Any, what: str) -> list[Word]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise TranscriptFileError(f"{what} words is not a list")
    words = []
    for k, w in enumerate(items):
        if not isinstance(w, dict) or not isinstance(w.get("word"), str):
            raise TranscriptFileError(f"{what} word {k + 1} has no text (\"word\")")
        start, end = _span(w, "start_s", "end_s", f"{what} word {k + 1}")
        words.append(Word(w["word"], start, end, _optional_number(w.get("prob"), f"{what} word {k + 1} prob")))
    return words


def _checks(items: Any, what: str) -> list[PhraseCheck]:
    if not items:
        return []
    try:
        return [PhraseCheck(**{name: item[name] for name in PhraseCheck.__dataclass_fields__}) for item in items]
    except (KeyError, TypeError) as exc:
        raise TranscriptFileError(f"{what} checks are not callqa's (missing or wrong {exc})") from None


def _numbers(items: Any, what: str) -> list[NumberMark] | None:
    if items is None:
        return None
    try:
        return [NumberMark(int(item["start"]), int(item["end"]), str(item["code"])) for item in items]
    except (KeyError, TypeError, ValueError) as exc:
        raise TranscriptFileError(f"{what} numbers are not callqa's (missing or wrong {exc})") from None


def read_callqa(data: dict, recording: Recording) -> Transcript:
    """callqa's own format (see the module's docstring)."""
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise TranscriptFileError(f"version {version!r} of {FORMAT_NAME}; this callqa reads version {FORMAT_VERSION}")
    items = data.get("utterances")
    if not isinstance(items, list):
        raise TranscriptFileError("no \"utterances\" list")
    found = Transcript(duration_s=_optional_number(data.get("duration_s"), "duration_s"))
    if data.get("channels") is not None:
        found.channels = int(_number(data["channels"], "channels"))
    for k, item in enumerate(items):
        what = f"utterance {k + 1}"
        if not isinstance(item, dict):
            raise TranscriptFileError(f"{what} is not an object")
        text = item.get("text")
        if not isinstance(text, str):
            raise TranscriptFileError(f"{what} has no \"text\"")
        start, end = _span(item, "start_s", "end_s", what)
        if item.get("speaker") is not None:
            speaker = _speaker(item["speaker"], what)
        elif item.get("channel") is not None:
            speaker = _speaker_of_channel(item["channel"], recording, what)
        else:
            raise TranscriptFileError(f"{what} has neither \"speaker\" nor \"channel\"")
        found.utterances.append(Utterance(
            call_id=recording.call_id, utterance_idx=0, speaker=speaker, start_s=start, end_s=end,
            text=text, raw_text=str(item.get("raw_text") or text),
            avg_logprob=_optional_number(item.get("avg_logprob"), f"{what} avg_logprob"),
            no_speech_prob=_optional_number(item.get("no_speech_prob"), f"{what} no_speech_prob"),
            words=_words(item.get("words"), what),
            role_confidence=_optional_number(item.get("role_confidence"), f"{what} role_confidence"),
            checks=_checks(item.get("checks"), what), numbers=_numbers(item.get("numbers"), what)))
    regions = data.get("voice_activity")
    if regions is not None:
        if not isinstance(regions, list):
            raise TranscriptFileError("\"voice_activity\" is not a list")
        for k, region in enumerate(regions):
            what = f"voice_activity {k + 1}"
            if not isinstance(region, dict):
                raise TranscriptFileError(f"{what} is not an object")
            start, end = _span(region, "start_s", "end_s", what)
            found.voice_activity.append(SpeechRegion(_speaker(region.get("speaker"), what), start, end))
    language = data.get("language") or {}
    if not isinstance(language, dict):
        raise TranscriptFileError("\"language\" is not an object")
    found.agent_language = language.get("agent")
    found.agent_language_prob = _optional_number(language.get("agent_prob"), "language agent_prob")
    found.agent_zh_prob = _optional_number(language.get("agent_zh_prob"), "language agent_zh_prob")
    roles = data.get("roles") or {}
    if not isinstance(roles, dict):
        raise TranscriptFileError("\"roles\" is not an object")
    found.roles_method = roles.get("method")
    found.roles_confidence = _optional_number(roles.get("confidence"), "roles confidence")
    return found


def read_alibaba(data: dict, recording: Recording) -> Transcript:
    """Alibaba Cloud recording-file recognition: the GetTaskResult response, or its ``Result``."""
    status = data.get("StatusText")
    if status is not None and status not in ALIBABA_DONE:
        raise TranscriptFileError(f"the recognition task did not succeed: StatusText {status!r} "
                    f"(StatusCode {data.get('StatusCode', '?')}); nothing to score")
    result = data.get("Result", data)
    if result in ("", None) and status == "SUCCESS_WITH_NO_VALID_FRAGMENT":
        result = {"Sentences": []}
    if not isinstance(result, dict) or not isinstance(result.get("Sentences", []), list):
        raise TranscriptFileError("\"Result\" holds no \"Sentences\" list")
    found = Transcript()
    if data.get("BizDuration") is not None:
        found.duration_s = _number(data["BizDuration"], "BizDuration", 0.001)
    sentences = []
    for k, item in enumerate(result.get("Sentences") or []):
        what = f"Sentences[{k}]"
        if not isinstance(item, dict) or not isinstance(item.get("Text"), str):
            raise TranscriptFileError(f"{what} has no \"Text\"")
        start, end = _span(item, "BeginTime", "EndTime", what, 0.001)
        channel = item.get("ChannelId", 0)
        sentences.append((channel, start, end, item["Text"], _speaker_of_channel(channel, recording, what)))
    words_of: dict[int, list[Word]] = {i: [] for i in range(len(sentences))}
    for k, item in enumerate(result.get("Words") or []):
        what = f"Words[{k}]"
        if not isinstance(item, dict) or not isinstance(item.get("Word"), str):
            raise TranscriptFileError(f"{what} has no \"Word\"")
        start, end = _span(item, "BeginTime", "EndTime", what, 0.001)
        middle = (start + end) / 2
        owner = next((i for i, (channel, s, e, _t, _sp) in enumerate(sentences)
                      if str(channel) == str(item.get("ChannelId", 0)) and s <= middle <= e), None)
        if owner is not None:  # a word outside every sentence of its channel says nothing the text does not
            words_of[owner].append(Word(item["Word"], start, end, None))
    for i, (_channel, start, end, text, speaker) in enumerate(sentences):
        found.utterances.append(Utterance(recording.call_id, 0, speaker, start, end, text, text, None, None,
                                          sorted(words_of[i], key=lambda w: w.start_s)))
    found.channels = 1 if recording.agent_channel == "mono" else 2
    return found


def read_transcript(path: Path, recording: Recording) -> Transcript:
    """Read one transcript file in either format.

    Raises:
        TranscriptFileError: not UTF-8 JSON, not a known format, or impossible content.
    """
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise TranscriptFileError(f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise TranscriptFileError(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise TranscriptFileError("not a JSON object")
    if data.get("format") == FORMAT_NAME:
        return read_callqa(data, recording)
    if "Sentences" in data or "StatusText" in data or isinstance(data.get("Result"), dict):
        return read_alibaba(data, recording)
    raise TranscriptFileError(f"neither callqa's format (\"format\": \"{FORMAT_NAME}\") nor Alibaba Cloud's recognition "
                "result (\"Result\" with \"Sentences\")")


def companion_audio(transcript: Path, endings: tuple[str, ...], listing: dict[Path, set[str]] | None = None) -> Path | None:
    """The recording beside a transcript (same name, an audio ending), if there is one.

    ``listing``: folder -> the names in it, filled as folders are first seen (one listing per folder
    instead of a file check per ending and call: 100,000 transcripts are discovered in seconds)."""
    listing = {} if listing is None else listing
    folder = transcript.parent
    if folder not in listing:
        try:
            listing[folder] = set(os.listdir(folder))
        except OSError:
            listing[folder] = set()
    names = listing[folder]
    for ending in endings:
        for candidate in (transcript.with_suffix(ending), transcript.with_suffix(ending.upper())):
            if candidate.name in names and candidate.is_file():
                return candidate
    return None


class ImportEngine:
    """Transcripts in (``[asr] engine = "import"``): nothing is transcribed."""

    name = "import"
    # a call costs a few milliseconds of rules here, and an orchestrator's task about 0.1 s: measured on
    # 2 cores, 10,000 calls took 51 s in tasks of 32 and 26 s in tasks of 320 (benchmarks/scale_benchmark.py)
    calls_per_task = 500

    def __init__(self, config: CallqaConfig):
        self.config = config

    def discover(self, input_dir: Path) -> Discovery:
        options = replace(self.config.input, audio_extensions=(TRANSCRIPT_ENDING,))
        discovery = discover_recordings(input_dir, options, kind="a transcript file")
        audio = tuple(self.config.input.audio_extensions)
        # a recording beside its transcript is part of the call (its clips play it), not an ignored file
        discovery.ignored = [f for f in discovery.ignored
                             if not (Path(f).suffix.lower() in audio
                                     and (Path(input_dir) / f).with_suffix(TRANSCRIPT_ENDING).is_file())]
        # a manifest that names the recordings (the same manifest as a transcribing night's) lists
        # their transcripts too
        named = {Path(r.path).with_suffix(TRANSCRIPT_ENDING) for r in discovery.recordings}
        discovery.errors = [e for e in discovery.errors
                            if not (e.error_type == "NotInManifestError" and e.path and Path(e.path) in named)]
        recordings, listing = [], {}
        for recording in discovery.recordings:
            beside = (companion_audio(Path(recording.path), audio, listing)
                      if Path(recording.path).suffix.lower() == TRANSCRIPT_ENDING else None)
            recordings.append(replace(recording, path=beside) if beside is not None else recording)
        discovery.recordings = recordings
        return discovery

    def label(self) -> str:
        return LABEL

    def fingerprint(self, label: str) -> str:
        options = {"engine": label, "format_version": FORMAT_VERSION, "privacy": asdict(self.config.privacy)}
        if self._listens:  # the checks stored with the utterances depend on the model and its options
            from .whisper import model_label

            options["verify"] = {**asdict(self.config.verify), "model": model_label(self.config.asr),
                                 "prompt": self.config.asr.initial_prompt + self.config.asr.prompt_words}
        return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]

    def prepare(self, workers: int) -> None:
        """Nothing to load, unless imported transcripts are checked on their audio (``[verify]
        imported``): then ``[asr] model``, once, before the batches share it.

        Raises:
            ModelError: that model cannot be loaded.
        """
        if self._listens:
            from .whisper import load_whisper

            load_whisper(self.config.asr, workers)

    def duration(self, recording: Recording) -> float | None:
        # reading a transcript costs next to nothing: counted as a second, batches fill up to
        # calls_per_task (None would make every call a task of its own)
        return 1.0

    def content_path(self, recording: Recording) -> Path:
        return self.transcript_path(recording)

    def transcript_path(self, recording: Recording) -> Path:
        path = Path(recording.path)
        return path if path.suffix.lower() == TRANSCRIPT_ENDING else path.with_suffix(TRANSCRIPT_ENDING)

    def process(self, recording: Recording, workers: int = 1) -> CallResult:
        result = CallResult(recording=recording, status=STATUS_OK, model=LABEL,
                            processed_at=datetime.now(timezone.utc),
                            transcription_fingerprint=self.fingerprint(LABEL))
        stage = "import"
        try:
            path = self.transcript_path(recording)
            try:
                result.content_sha256 = file_sha256(path)
            except FileNotFoundError:
                raise TranscriptFileError(f"{path.name} does not exist (the transcript of {recording.file})") from None
            except OSError as exc:
                if exc.errno in TRANSIENT_ERRNOS:
                    raise TransientInputError(f"{recording.file}: cannot read it just now: {exc}") from exc
                raise
            transcript = read_transcript(path, recording)
            self._fill(result, transcript, path)
            stage = "verify"
            if self._listens and result.utterances and Path(recording.path).suffix.lower() != TRANSCRIPT_ENDING:
                self._listen(result, Path(recording.path), workers)
        except TransientInputError:
            raise
        except Exception as exc:  # one bad transcript never stops the others
            result.status = STATUS_ERROR
            result.utterances = []
            message = str(exc) or repr(exc)
            if isinstance(exc, TranscriptFileError):
                message = f"{self.transcript_path(recording).name}: {message}"
            result.error = ErrorRecord(file=recording.file, call_id=recording.call_id,
                                       stage=getattr(exc, "stage", stage),
                                       error_type=type(exc).__name__, message=message,
                                       started_at=recording.started_at)
        return result

    def _fill(self, result: CallResult, transcript: Transcript, path: Path) -> None:
        audio = Path(result.recording.path)
        if audio.suffix.lower() != TRANSCRIPT_ENDING:
            self._describe_audio(result, audio)
        utterances = sorted(transcript.utterances, key=lambda u: (u.start_s, u.speaker))
        for i, u in enumerate(utterances):
            u.utterance_idx = i
            u.text = normalise_text(u.text)
            u.words = [Word(normalise_text(w.word), w.start_s, w.end_s, w.prob) for w in u.words
                       if normalise_text(w.word)]
        result.utterances = [u for u in utterances if u.text.strip()]
        speakers = {u.speaker for u in result.utterances}
        if transcript.roles_method:
            result.roles_method, result.roles_confidence = transcript.roles_method, transcript.roles_confidence
        elif speakers & {SPEAKER_AGENT, SPEAKER_CUSTOMER}:
            result.roles_method, result.roles_confidence = ROLES_CHANNELS, 1.0
        else:
            result.roles_method = ROLES_NONE
            result.warnings.append("the transcript names no agent or customer (mono, speakers not told apart): "
                                   "rules about one role do not apply")
        if result.roles_method == ROLES_CHANNELS:
            for u in result.utterances:
                if u.role_confidence is None:
                    u.role_confidence = 1.0
        result.voice_activity = sorted(
            transcript.voice_activity
            or [SpeechRegion(u.speaker, u.start_s, u.end_s) for u in result.utterances],
            key=lambda r: (r.start_s, r.speaker))
        result.agent_language, result.agent_language_prob = transcript.agent_language, transcript.agent_language_prob
        result.agent_zh_prob = transcript.agent_zh_prob
        spoken = max((u.end_s for u in transcript.utterances), default=0.0)
        if result.duration_s is None:
            result.duration_s = transcript.duration_s if transcript.duration_s is not None else round(spoken, 3)
        if result.channels is None:
            result.channels = transcript.channels
        if result.duration_s is not None and spoken > result.duration_s + 1.0:
            result.warnings.append(f"the transcript runs to {spoken:.1f} s, past the call's {result.duration_s:.1f} s")
        mask_result(result, self.config.privacy)  # before anything is stored or checked

    @property
    def _listens(self) -> bool:
        return self.config.verify.enabled and self.config.verify.imported

    def _listen(self, result: CallResult, audio: Path, workers: int) -> None:
        """The second listening on the recording beside the transcript (``[verify] imported``): the
        phrases the rules' verdicts rest on checked with ``[asr] model``, as a transcribing night does.
        A failure is a warning (the phrases are judged on the transcript), never the call's failure."""
        from ..verify import verifier_for
        from .whisper import load_whisper

        listen = verifier_for(self.config, load_whisper(self.config.asr, workers))
        if listen is None:
            return
        try:
            listen(result, AudioClips(audio, result.recording))
        except Exception as exc:  # the verdicts fall back to the transcript; the call is not lost
            result.warnings.append(f"phrases not checked on the audio ({type(exc).__name__}: {exc}); "
                                   "judged on the transcript alone")

    @staticmethod
    def _describe_audio(result: CallResult, audio: Path) -> None:
        """Format and length from the recording beside the transcript (its header only)."""
        from ..transcribe.audio import AudioStream, probe_duration

        try:
            stream = AudioStream(audio)
        except PipelineError as exc:
            result.warnings.append(f"the recording beside the transcript, {audio.name}, cannot be read ({exc}): "
                                   "no clips for this call")
            return
        result.channels, result.sample_rate, result.codec = stream.channels, stream.sample_rate, stream.codec
        result.duration_s = probe_duration(audio)


class AudioClips:
    """The recording beside a transcript, decoded once and cut into clips for the second listening: the
    agent's and the customer's channels as the manifest says (a mono recording: its one row)."""

    def __init__(self, audio: Path, recording: Recording):
        from ..transcribe.audio import AudioStream
        from ..transcribe.roles import assign_roles, rows_of

        stream = AudioStream(audio)
        roles = assign_roles(recording, stream.channels)
        pieces = [rows_of(piece, roles) for piece in stream.pieces()]
        self.rows = np.concatenate(pieces, axis=1) if pieces else np.zeros((1, 0), np.float32)
        self.row = {speaker: i for i, speaker in enumerate(roles.speakers)}

    def cut(self, spans) -> list[np.ndarray]:
        """One clip per (speaker, start_s, end_s)."""
        from ..transcribe.audio import TARGET_RATE

        last = self.rows.shape[0] - 1
        return [self.rows[min(self.row.get(speaker, 0), last), int(start * TARGET_RATE):int(end * TARGET_RATE)].copy()
                for speaker, start, end in spans]
