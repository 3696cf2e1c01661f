"""Configuration: frozen option groups with documented defaults, loaded from TOML and the environment.

A ``callqa.toml`` holds one table per group (``[asr]``, ``[voice_activity]``, ``[segmentation]``,
``[guard]``, ``[input]``, ``[privacy]``, ``[rules]``, ``[run]``). Any option can also be set with an environment variable named
``CALLQA_<GROUP>_<OPTION>`` (e.g. ``CALLQA_ASR_MODEL=/models/whisper-large-v3``), which wins over the file.
Unknown groups or options are errors, never silently ignored; every problem is reported with its
file and line (see :mod:`pipeline.validation`, which also builds the rule and rubric options).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError
from .validation import Source, build_options, read_toml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LEXICONS_DIR = PROJECT_ROOT / "lexicons"


def models_dir() -> Path:
    """Where assembled models live: ``$CALLQA_MODELS_DIR`` or the project's ``models/``."""
    return Path(os.environ.get("CALLQA_MODELS_DIR", PROJECT_ROOT / "models"))

AgentChannel = Literal["left", "right", "mono"]
AGENT_CHANNELS: tuple[str, ...] = typing.get_args(AgentChannel)
PRIVACY_KINDS = ("landline", "phone", "id_card", "bank_card")


@dataclass(frozen=True)
class AsrOptions:
    """How speech is turned into text.

    Attributes:
        engine: where the transcripts come from: ``whisper`` (any CTranslate2 Whisper model, the
            recordings transcribed here) or ``import`` (a folder of transcripts another recogniser
            wrote, one file per call: ``pipeline.engines.imported``; ``callqa run --engine import``).
        model: ``"bundled"`` (Whisper base shipped with callqa, assembled into ``models/``), a path to
            any CTranslate2 Whisper directory, or a faster-whisper model name (needs network once).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        compute_type: CTranslate2 compute type; ``int8`` is fastest on CPU.
        cpu_threads: threads per decoding worker on CPU; 0 shares the machine's cores between the
            ``[run] concurrency`` workers.
        language: spoken language; fixed to Chinese by default (language detection on 8 kHz speech
            is unreliable and costs a decoder pass).
        beam_size: 1 is greedy decoding (fast); 5 is Whisper's default.
        customer_beam_size: the beam for the customer's channel of a stereo call; 0 (the default):
            ``beam_size``. The customer's words feed fewer rules (``service.answer``,
            ``service.complaint_ack``) than the agent's: greedy (1) took the 64-call speed corpus from
            24.3x to 27.7x real time and the short-call one from 22.1x to 30.0x with those rules as
            accurate (one call less on one corpus, more on the other), but the customer's CER rose
            by 0.027 (docs/benchmarks.md).
        batch_size: how many 30-second windows are decoded together; 0 (the default): 1 on a CPU, 8 on
            a GPU. On a CPU a worker decodes on one core, where a bigger batch only costs more: full
            windows of speech took 1.23 s each one at a time and 1.51 s in batches of 8 (one thread,
            beam 5, word timing; ``benchmarks/speed/batch_cost.py``). With ``encode_min_s``, the
            nights of the speed corpora took 342 s instead of 364 s (64 calls) and 144 s instead of
            159 s (60 short calls), peak memory 1.56 GB instead of 2.08 (docs/benchmarks.md).
        window_s: the longest stretch of packed speech given to the model at once (Whisper's limit is 30 s).
        dialect_languages: languages that mean "not Putonghua" when the model identifies them in the
            agent's speech (``yue``, Cantonese, is known to Whisper large-v3, not to base: with a model
            that cannot name any of them, identification is skipped at no cost).
        agent_language_id: ask the model, from the encoder output of the agent's first window, how
            likely the agent's speech is in ``language`` (``calls.agent_zh_prob``, read by
            ``dialect.putonghua``): one decoder step a call, 1.7% of a demo night's wall time. ``false``
            saves that, and the rule's ``min_zh_prob`` branch then has nothing to read.
        encode_padding: ``trim``: the encoder reads a batch of windows only as far as its longest
            window's speech (whole seconds), not Whisper's zero padding to 30 s (the encoder's cost
            grows faster than its input). It pays where every window of a batch is short: the second
            pass (one turn a window) took 17 s instead of 76 s on the speed corpus, and the demo's
            short calls went from 16.7x to 19.1x with the same CER; a batch with one full window is
            encoded whole. ``full``: every window padded to 30 s, as Whisper was trained.
        encode_min_s: with ``trim``, the encoder still reads at least this much (the speech, then
            Whisper's padding): an encoder given much less than the 30 s it was trained on reads short
            turns worse. Measured on the short-call corpus, one window a batch: customer CER 0.281
            padded to 30 s, 0.304 trimmed to the speech, 0.290 with 10 s at least, 0.287 with 20 s (as
            costly as padding); 0.289 in batches of 8. 0: trim to the speech.
        encode_batch: on CPU, windows the encoder reads at once (the decoder still decodes
            ``batch_size`` together): one at a time needs about 500 MB less working memory per worker
            than 8 and is faster (0.425 against 0.553 s a 30 s window, two workers on 2 cores); on a
            GPU the whole batch is encoded at once.
        prompt_words: the words the standards require, given to the decoder after ``initial_prompt``
            (when there is one) so that it writes them as the standards spell them: with them, the
            speed corpus's agents' 您好 came out as 您好 in 16 of 17 opening lines (3 of 17 without:
            你好), and 请讲 as 请讲 where it had been 新疆, 信仗, 先讲 (false alarms of
            ``courtesy.qingjiang`` 12 -> 2 of 12 calls), with no 请讲 written in the 6 calls whose agent
            did not say it. Unlike the prompt, a reading of them alone is not taken for the prompt
            leaking in. Empty for none.
        initial_prompt: text that primes the decoder; ``{company}`` becomes the recording's company
            name. A simplified-Chinese sentence naming the company makes Whisper write the name as
            the company spells it (星河, not the homophone 心和) and lowers the error rate (measured:
            see README); the guard removes the prompt if the model echoes it. Empty for none.
    """

    engine: Literal["whisper", "import"] = "whisper"
    model: str = "bundled"
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0
    language: str = "zh"
    beam_size: int = 5
    customer_beam_size: int = 0
    batch_size: int = 0
    window_s: float = 30.0
    dialect_languages: tuple[str, ...] = ("yue",)
    agent_language_id: bool = True
    encode_padding: Literal["trim", "full"] = "trim"
    encode_min_s: float = 10.0
    encode_batch: int = 1
    initial_prompt: str = "以下是{company}客服中心的电话录音。"
    prompt_words: str = "您好，请讲。"

    @property
    def decode_batch(self) -> int:
        """Windows decoded together: ``batch_size``, or automatic (1 on a CPU, 8 on a GPU)."""
        return self.batch_size or (8 if self.device == "cuda" else 1)

    def validate(self) -> list[tuple[str, str]]:
        problems = []
        if not 1 <= self.window_s <= 30:
            problems.append(("window_s", "window_s must be between 1 and 30 seconds (Whisper's window)"))
        if self.beam_size < 1:
            problems.append(("beam_size", "beam_size must be at least 1"))
        if self.customer_beam_size < 0:
            problems.append(("customer_beam_size", "customer_beam_size must be 0 (beam_size) or more"))
        if self.batch_size < 0:
            problems.append(("batch_size", "batch_size must be 0 (automatic) or more"))
        if self.encode_batch < 1:
            problems.append(("encode_batch", "encode_batch must be at least 1"))
        if not 0 <= self.encode_min_s <= 30:
            problems.append(("encode_min_s", "encode_min_s must be between 0 and 30 seconds"))
        if self.cpu_threads < 0:
            problems.append(("cpu_threads", "cpu_threads must be 0 (share the cores) or more"))
        return problems


@dataclass(frozen=True)
class VoiceActivityOptions:
    """Silero voice activity detection, run on each channel separately.

    Attributes:
        threshold: speech probability above which a 32 ms frame is speech. 0.4 rather than Silero's
            0.5: at 0.5 the onset of 抱歉 after a 62 s hold was cut and Whisper wrote 切绕 (demo call08);
            on the demo corpus 0.4 gave agent/customer CER 0.119/0.172 against 0.119/0.189 at 0.5.
        min_speech_ms: shorter bursts are dropped (clicks, breaths).
        min_silence_ms: a silence must last this long to end a speech region.
        speech_pad_ms: padding added to both sides of every region.
    """

    threshold: float = 0.4
    min_speech_ms: int = 150
    min_silence_ms: int = 250
    speech_pad_ms: int = 80


@dataclass(frozen=True)
class SegmentationOptions:
    """How voice activity becomes utterances (turns).

    Attributes:
        split_pause_s: a pause of at least this long within one speaker's channel starts a new utterance.
        max_utterance_s: longer turns are cut at their longest internal pause (Whisper sees at most 30 s).
        pack_gap_s: silence inserted between turns when they are packed into one model window.
        asr_pad_s: audio context given to the model on both sides of a turn (voice activity cuts
            close to the voice; a clipped first syllable is often lost).
        min_chars_per_s: a turn that comes back with fewer characters per second of voice than this
            is decoded again on its own (Mandarin is spoken at 3-5 characters per second).
        stream_piece_s: a recording longer than this is decoded and its voice activity found in pieces
            of this length, and its turns transcribed in groups (``group_speech_s``), so that memory
            does not grow with its length; a shorter one is decoded whole, in one piece.
        group_speech_s: turns are transcribed in groups of about this much speech (with their
            context), one batched pass each: the model's working memory grows with what it is given
            at once (measured: about 2 MB per turn beyond one batch). A call with less speech than
            this (any call of a few minutes; every demo call) is one group.
    """

    split_pause_s: float = 0.8
    max_utterance_s: float = 25.0
    pack_gap_s: float = 0.3
    asr_pad_s: float = 0.3
    min_chars_per_s: float = 2.0
    stream_piece_s: float = 600.0
    group_speech_s: float = 120.0

    def validate(self) -> list[tuple[str, str]]:
        problems = []
        if self.stream_piece_s < 60:
            problems.append(("stream_piece_s", "stream_piece_s must be at least 60 seconds"))
        if self.group_speech_s < 30:
            problems.append(("group_speech_s", "group_speech_s must be at least 30 seconds"))
        return problems


@dataclass(frozen=True)
class DiarisationOptions:
    """How mono recordings are split into speakers, and when their roles are trusted.

    Attributes:
        enabled: split mono recordings into speakers and find the agent (needs the speaker model,
            ``callqa model install``); off: a mono recording is one speaker ``unknown``.
        window_s: length of the windows speech is embedded in (CAM++ is reliable from about 1 s; on the demo
            mixdowns 1.0 s found the change inside call04's interruption, which 1.5 s windows missed).
        min_window_s: a region shorter than this gets no embedding of its own; it takes the speaker of
            the nearest window in time.
        merge_similarity: clusters are merged while their average cosine similarity is above this
            (one voice: 0.6-0.9 between windows; two voices: 0.0-0.45, measured on the demo corpus).
        min_speaker_s: a cluster with less speech than this is not a speaker of its own.
        max_cluster_windows: at most this many windows are clustered (evenly chosen); the others join
            the nearest cluster (bounds the time on long recordings).
        min_pause_s: a quieter stretch at least this long inside a region of voice activity is a pause:
            windows never straddle one, and a change of speaker there is a turn, not speech over speech
            (voice activity joins regions less than about 0.4 s apart, so turns of a quick exchange
            share one region).
    """

    enabled: bool = True
    window_s: float = 1.0
    min_window_s: float = 0.4
    min_pause_s: float = 0.1
    merge_similarity: float = 0.55
    min_speaker_s: float = 4.0
    max_cluster_windows: int = 400

    def validate(self) -> list[tuple[str, str]]:
        problems = []
        if not 0.5 <= self.window_s <= 10:
            problems.append(("window_s", "window_s must be between 0.5 and 10 seconds"))
        if not -1 < self.merge_similarity < 1:
            problems.append(("merge_similarity", "merge_similarity must be between -1 and 1"))
        if not 0.03 <= self.min_pause_s <= 2:
            problems.append(("min_pause_s", "min_pause_s must be between 0.03 and 2 seconds"))
        return problems



@dataclass(frozen=True)
class VerifyOptions:
    """The second listening: phrase findings checked on the audio by the speech model's decoder (issue
    25, ``pipeline/verify``). How a check decides is the lexicons' (``rules.toml [verify]``); these
    options say how the audio is asked, and are part of the transcription fingerprint.

    Attributes:
        enabled: check the phrases of the rules that say ``verify = true`` on the audio while it is
            at hand (a night); off: those rules judge the transcript alone.
        lead_s: audio kept before the first word of a clip.
        context_s: a phrase later in an utterance is read with up to this much of the words before it
            (their text is the decoder's prefix): the model hears a word best in its sentence.
        after_s: audio after the phrase starts (measured on the calibration corpus: 3 s of the
            opening told 您好 from 你好 best, whole openings of 5-6 s worse, 1.5 s not at all).
        pad_s: each clip is encoded padded with silence to this length (Whisper hears 30-s windows;
            10 s: 0.12 s of encoder per clip on one core, against 0.79 s for 30 s).
        max_checks: at most this many phrases checked per call (the rest judged on the transcript,
            with a warning).
        neighbours: rivals taken from the dictionary for each phrase (same length, the same syllables
            but one, which keeps its final: 新疆 for 请讲), besides the lexicon's ``confusable=``.
        priors: also score every option on silence (the language model's prior, stored beside each check
            for ``rules.toml [verify] prior_weight``); costs a decoder pass per check, and weighing it in
            made the decisions worse on the calibration corpora, so off.
        imported: also check imported transcripts (``[asr] engine = "import"``) that have their
            recording beside them, with ``[asr] model`` (costs that model's time per checked phrase;
            off: their phrases are judged on the transcript, as another recogniser wrote them).
    """

    enabled: bool = True
    lead_s: float = 0.2
    context_s: float = 2.0
    after_s: float = 3.0
    pad_s: float = 10.0
    max_checks: int = 12
    neighbours: int = 3
    priors: bool = False
    imported: bool = False

    def validate(self) -> list[tuple[str, str]]:
        problems = []
        if not 1.0 <= self.after_s <= 10.0:
            problems.append(("after_s", "after_s must be between 1 and 10 seconds"))
        if not 0.0 <= self.pad_s <= 30.0:
            problems.append(("pad_s", "pad_s must be between 0 (no padding) and 30 seconds"))
        if self.max_checks < 0 or self.neighbours < 0:
            problems.append(("max_checks", "max_checks and neighbours must not be negative"))
        return problems


@dataclass(frozen=True)
class GuardOptions:
    """Guards against Whisper's known failures on silence and noise.

    Attributes:
        phrases_file: list of known hallucinated phrases (one per line, ``#`` comments).
        max_repeats: a phrase (two or more characters) repeated more often than this in a row is
            collapsed to one copy.
        max_char_repeats: the same for a single character (对对对对 and 好好好好 are speech).
        no_speech_prob: a segment is dropped when its no-speech probability is above this ...
        no_speech_logprob: ... and its average log-probability is below this. Whisper's own rule, with
            thresholds measured to hold on any x86-64 CPU: what Whisper base invents on 10 s of silence
            or noise read at no-speech 0.49-0.73 and log-probability -1.07 to -2.67 under 15 kernel
            settings (CTranslate2's CT2_FORCE_CPU_ISA x CT2_USE_MKL, oneDNN's ONEDNN_MAX_CPU_ISA down
            to SSE4.1; an AVX2-only CPU reads noise at 0.49 / -1.12), while the 131 utterances of the
            demo corpus read at no-speech <= 0.42 and log-probability >= -0.50. The old 0.5 / -1.0 let
            that AVX2 reading through.
        min_word_prob: an utterance whose mean word probability is below this is dropped.
        echo_logprob: a turn whose whole text is a piece of the decoder prompt is dropped as an echo
            when its average log-probability is below this.
    """

    phrases_file: str = str(LEXICONS_DIR / "hallucinations.txt")
    max_repeats: int = 3
    max_char_repeats: int = 6
    no_speech_prob: float = 0.4
    no_speech_logprob: float = -0.8
    min_word_prob: float = 0.15
    echo_logprob: float = -0.5


@dataclass(frozen=True)
class InputOptions:
    """Defaults for recordings whose manifest row (or missing manifest) does not say.

    Attributes:
        agent_channel: ``left``, ``right`` or ``mono``: where the agent is in a stereo file.
        company: the company name agents must say in the opening.
        timezone: the contact centre's timezone; call dates and naive timestamps are taken in it.
        audio_extensions: file name endings treated as recordings when there is no manifest.
        manifest_encoding: ``auto`` reads manifest.csv as UTF-8 (with or without BOM) or else GB18030
            (GBK, what Chinese-locale Excel writes); or a Python codec name to insist on one.
    """

    agent_channel: AgentChannel = "left"
    company: str = "星河通信"
    timezone: str = "Asia/Shanghai"
    manifest_encoding: str = "auto"
    audio_extensions: tuple[str, ...] = (
        ".wav", ".mp3", ".flac", ".ogg", ".opus", ".oga", ".m4a", ".aac", ".mp4", ".wma",
        ".amr", ".webm", ".aif", ".aiff", ".au", ".caf", ".3gp",
    )

    def validate(self) -> list[tuple[str, str]]:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return [("timezone", f"timezone {self.timezone!r} is not a known IANA timezone (e.g. Asia/Shanghai)")]
        return []


@dataclass(frozen=True)
class PrivacyOptions:
    """Masking of personal numbers in every stored text field (see ``pipeline/transcribe/privacy.py``).

    Attributes:
        mask: mask at all (on by default; turn off only where the law and the site allow it).
        kinds: which numbers: ``landline`` (7-8 digits), ``phone`` (11-12), ``id_card`` (15; 18 is
            masked as a bank card length), ``bank_card`` (16-19).
        min_digits: any other run of at least this many digits is masked too.
    """

    mask: bool = True
    kinds: tuple[str, ...] = PRIVACY_KINDS
    min_digits: int = 9

    def validate(self) -> list[tuple[str, str]]:
        unknown = sorted(set(self.kinds) - set(PRIVACY_KINDS))
        return [("kinds", f"kinds: unknown {unknown}; known: {', '.join(PRIVACY_KINDS)}")] if unknown else []


@dataclass(frozen=True)
class RulesOptions:
    """Where the rules come from.

    Attributes:
        lexicons: the folder of phrase lists and ``rules.toml`` (validated when a run starts).
        rubric: the scoring rubric (validated with the lexicons).
    """

    lexicons: str = str(LEXICONS_DIR)
    rubric: str = str(LEXICONS_DIR / "rubric.toml")


@dataclass(frozen=True)
class RunOptions:
    """How a run is executed.

    Attributes:
        concurrency: recordings transcribed at the same time in one process, sharing one model; 0
            means one per CPU core on CPU (measured on 2 cores: 1 -> 10.9x, 2 -> 16.9x real time,
            because decoding, voice activity and alignment of one call overlap the other's) and 1 on GPU.
        state_dir: where callqa keeps local state, including Prefect's database (``PREFECT_HOME``).
        retry_delays_s: waits before each retry of a recording that could not be read for a passing
            reason (I/O error, timeout); a bad recording is never retried.
        runner: ``threads`` (one process, recordings in threads sharing one model) or ``dask`` (each
            recording a task on a Dask cluster; every worker process loads the model once).
        dask_address: an existing Dask scheduler (``tcp://host:8786``); empty starts a local cluster.
        dask_workers: worker processes of the local cluster (0: one per CPU core).
        batch_audio_s: recordings shorter than this share a task, up to about this much audio per
            task, so that Prefect's cost per task (about 0.1 s of a worker's time, measured) stays
            small next to the transcription; a longer recording is a task of its own. 0: one task
            per recording.
        batch_max_calls: at most this many recordings in one task.
    """

    concurrency: int = 0
    retry_delays_s: tuple[float, ...] = (5.0, 30.0, 120.0)
    runner: Literal["threads", "dask"] = "threads"
    dask_address: str = ""
    dask_workers: int = 0
    batch_audio_s: float = 60.0
    batch_max_calls: int = 32
    state_dir: str = ".callqa"

    def validate(self) -> list[tuple[str, str]]:
        problems = []
        if self.concurrency < 0:
            problems.append(("concurrency", "concurrency must be 0 (automatic) or more"))
        if self.dask_workers < 0:
            problems.append(("dask_workers", "dask_workers must be 0 (one per core) or more"))
        if self.batch_audio_s < 0:
            problems.append(("batch_audio_s", "batch_audio_s must be 0 (one task per recording) or more"))
        if self.batch_max_calls < 1:
            problems.append(("batch_max_calls", "batch_max_calls must be at least 1"))
        if any(delay < 0 for delay in self.retry_delays_s):
            problems.append(("retry_delays_s", "retry_delays_s must not be negative"))
        return problems


@dataclass(frozen=True)
class CallqaConfig:
    """All options of a run, grouped. Build with :func:`load_config`."""

    asr: AsrOptions = field(default_factory=AsrOptions)
    voice_activity: VoiceActivityOptions = field(default_factory=VoiceActivityOptions)
    segmentation: SegmentationOptions = field(default_factory=SegmentationOptions)
    guard: GuardOptions = field(default_factory=GuardOptions)
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    diarisation: DiarisationOptions = field(default_factory=DiarisationOptions)
    input: InputOptions = field(default_factory=InputOptions)
    privacy: PrivacyOptions = field(default_factory=PrivacyOptions)
    rules: RulesOptions = field(default_factory=RulesOptions)
    run: RunOptions = field(default_factory=RunOptions)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> list[tuple[str, str, str]]:
        """Constraints between groups, as (group, option, message)."""
        if self.segmentation.max_utterance_s > self.asr.window_s - 1:
            return [("segmentation", "max_utterance_s",
                     "max_utterance_s must be at least 1 s shorter than [asr] window_s")]
        return []


def _environment(group: str, cls: type) -> dict[str, tuple[str, str]]:
    """The ``CALLQA_<GROUP>_<OPTION>`` variables set for one group: option -> (variable, text)."""
    found = {}
    for f in fields(cls):
        variable = f"CALLQA_{group.upper()}_{f.name.upper()}"
        if variable in os.environ:
            found[f.name] = (variable, os.environ[variable])
    return found


def load_config(path: str | os.PathLike | None = None) -> CallqaConfig:
    """Load options from a TOML file (optional) and ``CALLQA_*`` environment variables.

    Args:
        path: a ``callqa.toml``; ``None`` uses defaults and the environment only.

    Returns:
        The validated, frozen configuration.

    Raises:
        ConfigError: the file is missing, unreadable or not valid TOML, or options are unknown or
            invalid (every problem, each with its file and line).
    """
    data: dict[str, Any] = {}
    source = Source("defaults")
    if path is not None:
        data, source = read_toml(path, ConfigError, "config file")
    groups = {f.name: f for f in fields(CallqaConfig)}
    problems = [f"{source.where((name,))}: unknown section [{name}]; known: {', '.join(groups)}"
                for name in data if name not in groups]
    hints = typing.get_type_hints(CallqaConfig)
    built = {name: build_options(hints[name], data.get(name, {}), source, (name,), f"[{name}]", problems,
                                 _environment(name, hints[name])) for name in groups}
    if problems:
        raise ConfigError(problems)
    config = CallqaConfig(**built)
    problems = [f"{source.where((group,), key)}: [{group}] {message}" for group, key, message in config.validate()]
    if problems:
        raise ConfigError(problems)
    return config


def resolve_concurrency(config: CallqaConfig, requested: int | None = None) -> int:
    """How many recordings to transcribe at once: ``requested``, else ``[run] concurrency``, else automatic."""
    value = requested or config.run.concurrency
    if value:
        return value
    return 1 if config.asr.device == "cuda" else max(1, os.cpu_count() or 1)
