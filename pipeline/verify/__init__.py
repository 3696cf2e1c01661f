"""The second listening: the phrases the standards hinge on, checked on the audio (issue 25).

Whisper base, decoding freely, cannot hear 您好 from 你好 or 稍候 from 收获 on telephone audio, and its
prompt makes it write words that were not said. While a night still has a call's audio, the rules that
say ``verify = true`` are run on the fresh transcript and what their verdicts rest on is asked again:
each phrase found, and each place a sound-alike of a wanted phrase stands, is scored with the model's
own decoder against its rivals on a few seconds of that utterance's audio. The answers are stored with
the utterances and decided by the rules (:mod:`pipeline.rules.verification`), tonight and at every
rescore.

Modules, in reading order:

1. ``rivals``  what a phrase is scored against (the lexicon's ``confusable=``, the transcript's own
               text there, pinyin neighbours from jieba's dictionary)
2. ``scorer``  the model asked how likely each option is on a clip, and on silence (the prior)
3. ``listen``  which phrases a call's verdicts rest on, the clips, the checks on the utterances
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..config import LEXICONS_DIR, CallqaConfig
from ..transcribe.speech import SpeechModel

_verifiers: dict[tuple, object] = {}
_lock = threading.Lock()
_loaded: dict[str, tuple[tuple, object]] = {}


def _lexicons(folder, load):
    """The lexicons of ``folder``, read again only when a file in it changed (name, size or time):
    a worker asks for every recording, and reading and checking them cost 50 ms each time."""
    where = Path(folder) if folder else LEXICONS_DIR
    try:
        stamp = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in where.iterdir() if p.is_file()))
    except OSError:
        return load(folder)  # the loader says what is wrong
    with _lock:
        cached = _loaded.get(str(where))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    lexicons = load(folder)
    with _lock:
        _loaded[str(where)] = (stamp, lexicons)
    return lexicons


def verifier_for(config: CallqaConfig, model: SpeechModel):
    """The process's :class:`~pipeline.verify.listen.PhraseVerifier` for these lexicons, options and
    model (built once per worker: the lexicons compiled, the prior cache shared), or None when nothing
    is to be checked (``[verify] enabled = false``, no rule says ``verify = true``, or the model cannot
    score given texts: its ``phrase_scorer`` gives None).

    Raises:
        LexiconError: the lexicons are invalid (a night checks them before it starts).
    """
    from ..rules.engine import RuleEngine
    from ..rules.lexicon import load_lexicons
    from .listen import make_verifier

    scorer_for = getattr(model, "phrase_scorer", None)
    if not config.verify.enabled or scorer_for is None:
        return None
    lexicons = _lexicons(config.rules.lexicons, load_lexicons)
    key = (lexicons.folder, lexicons.version, id(model), config.verify, config.asr.initial_prompt,
           config.asr.prompt_words)
    with _lock:
        if key not in _verifiers:
            verifier = make_verifier(RuleEngine(lexicons), lambda: scorer_for(config.verify), config.verify,
                                     config.asr.initial_prompt + config.asr.prompt_words)
            if verifier is not None and verifier.scorer is None:  # the model cannot score given texts
                verifier = None
            _verifiers[key] = verifier
        return _verifiers[key]
