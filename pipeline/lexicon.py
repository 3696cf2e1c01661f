"""Loading and validating ``lexicons/``: phrase lists (``*.txt``) and rule definitions (``rules.toml``).

Everything is checked on load. A typo, an unknown option, an empty phrase, a duplicate id or a rule
that names a missing phrase group is a :class:`LexiconError` that lists every problem found, each with
its file and line, so a QA manager fixes them in one go. The file format is described in
``lexicons/README.md``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import LEXICONS_DIR
from .errors import PipelineError
from .text import match_key

SEVERITIES = ("轻", "中", "重")
PHRASE_KINDS = ("phrase", "asr_variant")
_GROUP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_GROUP_OPTIONS = ("category", "severity", "sound", "inside", "dialect", "mismatch")
_PHRASE_OPTIONS = ("except", "sound", "inside", "kind", "at")
PHRASE_POSITIONS = ("anywhere", "start")
COMPANY_PLACEHOLDER = "{company}"


class LexiconError(PipelineError):
    """One or more lexicon files are invalid; ``problems`` holds ``file:line: message`` strings."""

    stage = "lexicon"

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the lexicons:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Phrase:
    """One lexicon entry. ``text`` may hold ``{company}``, resolved per call."""

    group: str
    text: str
    excepts: tuple[str, ...]
    sound: bool
    inside: bool
    kind: str
    source: str  # file:line
    at: str = "anywhere"  # "start": only at the start of an utterance (a bare 喂 hailing the customer)


@dataclass(frozen=True)
class Group:
    id: str
    phrases: tuple[Phrase, ...]
    category: str
    severity: str
    dialect: str | None
    mismatch: int  # syllables that may differ in a sound-alike match (long phrases such as company names)
    source: str


@dataclass(frozen=True)
class RuleSpec:
    rule_id: str
    type: str
    options: dict[str, Any]
    description: str
    source: str
    name: str = ""  # display name (rules.toml `name`; the rule id when not given)


@dataclass(frozen=True)
class LexiconSet:
    """All phrase groups and rules of a lexicon folder, validated. ``version`` hashes their content."""

    groups: dict[str, Group]
    rules: tuple[RuleSpec, ...]
    equivalences: tuple[str, ...]
    version: str
    folder: str = ""
    files: tuple[str, ...] = field(default_factory=tuple)

    def select(self, patterns: list[str]) -> list[Group]:
        """The groups whose ids match any of the patterns (``forbidden.*``), in file order."""
        return [g for gid, g in self.groups.items() if any(fnmatch.fnmatchcase(gid, p) for p in patterns)]


def _yes_no(value: str, where: str, problems: list[str]) -> bool:
    if value.lower() in ("yes", "true", "1"):
        return True
    if value.lower() in ("no", "false", "0"):
        return False
    problems.append(f"{where}: {value!r} must be yes or no")
    return False


def parse_phrase_file(path: Path, problems: list[str]) -> list[Group]:
    """Parse one phrase list; append problems instead of raising so all are reported together."""
    groups: list[Group] = []
    current: dict[str, Any] | None = None
    name = path.name

    def close() -> None:
        if current is None:
            return
        if not current["phrases"]:
            problems.append(f"{current['source']}: group [{current['id']}] has no phrases")
        groups.append(Group(current["id"], tuple(current["phrases"]), current["category"], current["severity"],
                            current["dialect"], current["mismatch"], current["source"]))

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{name}:{number}"
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            close()
            if not line.endswith("]"):
                problems.append(f"{where}: a group header must look like [group.id]")
                current = None
                continue
            gid = line[1:-1].strip()
            if not _GROUP_ID.match(gid):
                problems.append(f"{where}: invalid group id {gid!r} (letters, digits, '.', '_', '-')")
            current = {"id": gid, "phrases": [], "category": gid, "severity": "中", "sound": True,
                       "inside": False, "dialect": None, "mismatch": 0, "source": where, "seen": set()}
            continue
        if current is None:
            problems.append(f"{where}: {line!r} comes before any [group] header")
            continue
        if line.startswith("@"):
            key, sep, value = line[1:].partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not value:
                problems.append(f"{where}: a group option must look like @name = value")
            elif current["phrases"]:
                problems.append(f"{where}: @{key} must come before the group's first phrase")
            elif key not in _GROUP_OPTIONS:
                problems.append(f"{where}: unknown group option @{key}; known: "
                                + ", ".join("@" + o for o in _GROUP_OPTIONS))
            elif key == "severity" and value not in SEVERITIES:
                problems.append(f"{where}: @severity must be one of {'/'.join(SEVERITIES)}, not {value!r}")
            elif key in ("sound", "inside"):
                current[key] = _yes_no(value, where, problems)
            elif key == "mismatch":
                if not value.isdigit():
                    problems.append(f"{where}: @mismatch must be a whole number of syllables")
                else:
                    current["mismatch"] = int(value)
            else:
                current[key] = value
            continue
        text, *fields = [part.strip() for part in line.split("|")]
        options = {"sound": current["sound"], "inside": current["inside"], "kind": "phrase", "except": (),
                   "at": "anywhere"}
        for item in fields:
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or key not in _PHRASE_OPTIONS:
                problems.append(f"{where}: unknown phrase option {item!r}; known: {', '.join(_PHRASE_OPTIONS)}")
            elif key in ("sound", "inside"):
                options[key] = _yes_no(value, where, problems)
            elif key == "kind":
                if value not in PHRASE_KINDS:
                    problems.append(f"{where}: kind must be one of {', '.join(PHRASE_KINDS)}")
                options["kind"] = value
            elif key == "at":
                if value not in PHRASE_POSITIONS:
                    problems.append(f"{where}: at must be one of {', '.join(PHRASE_POSITIONS)}")
                options["at"] = value
            else:
                excepts = tuple(e.strip() for e in value.split(",") if e.strip())
                if not excepts or any(not match_key(e) for e in excepts):
                    problems.append(f"{where}: except= needs comma-separated phrases with letters or digits")
                options["except"] = excepts
        if not match_key(text.replace(COMPANY_PLACEHOLDER, "x")):
            problems.append(f"{where}: empty phrase {text!r} (no letters or digits)")
            continue
        if text in current["seen"]:
            problems.append(f"{where}: phrase {text!r} appears twice in [{current['id']}]")
            continue
        current["seen"].add(text)
        current["phrases"].append(Phrase(current["id"], text, options["except"], options["sound"],
                                         options["inside"], options["kind"], where, options["at"]))
    close()
    return groups


# Each rule type's options: name -> (python types, required)
_NUM = (int, float)
_LEX = (list, str)
_WINDOW = (dict,)
RULE_TYPES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "keyword": {"lexicon": (_LEX, True), "mode": ((str,), True), "role": ((str,), False),
                "window": (_WINDOW, False), "min_hits": ((int,), False)},
    "regex": {"pattern": ((str,), True), "exclude": ((str,), False), "mode": ((str,), True),
              "role": ((str,), False), "window": (_WINDOW, False)},
    "sequence": {"before": (_LEX, True), "after": (_LEX, True), "role": ((str,), False),
                 "within_s": (_NUM, False), "within_utterances": ((int,), False)},
    "hold": {"check": ((str,), True), "min_silence_s": (_NUM, True), "notice": (_LEX, False),
             "notice_within_s": (_NUM, False), "apology": (_LEX, False), "apology_within_s": (_NUM, False),
             "require_apology": ((bool,), False), "max_s": (_NUM, False)},
    "speech_rate": {"role": ((str,), False), "min_cpm": (_NUM, True), "max_cpm": (_NUM, True),
                    "min_speech_s": (_NUM, False)},
    "interruption": {"role": ((str,), False), "other": ((str,), False), "tolerance_s": (_NUM, True)},
    "answer_delay": {"max_s": (_NUM, True), "apology": (_LEX, False)},
    "dialect": {"lexicon": (_LEX, True), "role": ((str,), False), "min_markers": ((int,), False),
                "languages": ((list,), False), "min_language_prob": (_NUM, False)},
}
_COMMON = ("type", "name", "description", "enabled")
_MODES = {"keyword": ("any", "all", "none"), "regex": ("any", "none")}
_ROLES = ("agent", "customer", "any")
_WINDOW_KEYS = ("first_s", "last_s", "first_utterances", "last_utterances")
_LEXICON_KEYS = ("lexicon", "before", "after", "notice", "apology")
DEFAULT_EQUIVALENCES = ("in=ing", "en=eng", "z=zh", "c=ch", "s=sh", "n=l", "f=h", "an=ang")


def rule_line(text_lines: list[str], rule_id: str, key: str | None = None) -> int:
    """The line of a rule's table header (or of one of its keys), for error messages."""
    header = re.compile(r'^\s*\[\s*rules\s*\.\s*"?%s"?\s*\]' % re.escape(rule_id))
    for number, line in enumerate(text_lines, 1):
        if header.match(line):
            if key is None:
                return number
            for offset, later in enumerate(text_lines[number:], number + 1):
                if later.lstrip().startswith("["):
                    break
                if re.match(r"^\s*%s\s*=" % re.escape(key), later):
                    return offset
            return number
    return 1


def parse_rules_file(path: Path, group_ids: list[str], problems: list[str]) -> tuple[list[RuleSpec], tuple[str, ...]]:
    """Parse and check ``rules.toml`` against the rule types and the known phrase groups."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path.name}: not valid TOML: {exc}")
        return [], DEFAULT_EQUIVALENCES
    for key in data:
        if key not in ("rules", "sound"):
            problems.append(f"{path.name}: unknown top-level table [{key}] (known: [rules.\"id\"], [sound])")
    equivalences = tuple(data.get("sound", {}).get("equivalences", DEFAULT_EQUIVALENCES))
    for pair in equivalences:
        if not re.fullmatch(r"[a-z]+=[a-z]+", pair):
            problems.append(f"{path.name}: [sound] equivalence {pair!r} must look like in=ing")
    specs = []
    for rule_id, options in data.get("rules", {}).items():
        where = f"{path.name}:{rule_line(lines, rule_id)}"
        if not isinstance(options, dict):
            problems.append(f"{where}: rules.{rule_id} must be a table")
            continue
        rtype = options.get("type")
        if rtype not in RULE_TYPES:
            problems.append(f"{path.name}:{rule_line(lines, rule_id, 'type')}: rule {rule_id!r} has unknown type "
                            f"{rtype!r}; known: {', '.join(RULE_TYPES)}")
            continue
        allowed = RULE_TYPES[rtype]
        for key, value in options.items():
            at = f"{path.name}:{rule_line(lines, rule_id, key)}"
            if key in _COMMON:
                continue
            if key not in allowed:
                problems.append(f"{at}: rule {rule_id!r}: unknown option {key!r} for type {rtype}; "
                                f"known: {', '.join(allowed)}")
                continue
            types = allowed[key][0]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                problems.append(f"{at}: rule {rule_id!r}: {key} = {value!r} has the wrong type")
                continue
            if key in _LEXICON_KEYS:
                patterns = [value] if isinstance(value, str) else value
                for pattern in patterns:
                    if not any(fnmatch.fnmatchcase(g, pattern) for g in group_ids):
                        problems.append(f"{at}: rule {rule_id!r}: no phrase group matches {pattern!r}")
            if key == "mode" and value not in _MODES.get(rtype, ()):
                problems.append(f"{at}: rule {rule_id!r}: mode must be one of {', '.join(_MODES[rtype])}")
            if key in ("role", "other") and value not in _ROLES:
                problems.append(f"{at}: rule {rule_id!r}: {key} must be one of {', '.join(_ROLES)}")
            if key == "window":
                for wkey, wvalue in value.items():
                    if wkey not in _WINDOW_KEYS or not isinstance(wvalue, _NUM) or wvalue <= 0:
                        problems.append(f"{at}: rule {rule_id!r}: window option {wkey} = {wvalue!r}; "
                                        f"known: {', '.join(_WINDOW_KEYS)}, each a positive number")
            if key in ("pattern", "exclude"):
                try:
                    re.compile(value)
                except re.error as exc:
                    problems.append(f"{at}: rule {rule_id!r}: invalid regular expression: {exc}")
            if key == "check" and value not in ("announced", "duration"):
                problems.append(f"{at}: rule {rule_id!r}: check must be announced or duration")
        for key, (_types, required) in allowed.items():
            if required and key not in options:
                problems.append(f"{where}: rule {rule_id!r} (type {rtype}) needs {key!r}")
        if rtype == "hold" and options.get("check") == "announced" and "notice" not in options:
            problems.append(f"{where}: rule {rule_id!r}: check = announced needs notice")
        if rtype == "hold" and options.get("check") == "duration" and "max_s" not in options:
            problems.append(f"{where}: rule {rule_id!r}: check = duration needs max_s")
        if options.get("enabled", True) is False:
            continue
        specs.append(RuleSpec(rule_id, rtype, {k: v for k, v in options.items() if k not in _COMMON},
                              str(options.get("description", "")), where, str(options.get("name") or rule_id)))
    return specs, equivalences


def load_lexicons(folder: str | Path | None = None) -> LexiconSet:
    """Load and validate every phrase list and ``rules.toml`` of a lexicon folder.

    Args:
        folder: the lexicon folder (default: the project's ``lexicons/``).

    Returns:
        The validated lexicons, with a content hash as ``version``.

    Raises:
        LexiconError: any file has a problem (all problems are listed).
    """
    folder = Path(folder) if folder else LEXICONS_DIR
    problems: list[str] = []
    if not folder.is_dir():
        raise LexiconError([f"{folder}: lexicon folder not found"])
    digest = hashlib.sha256()
    groups: dict[str, Group] = {}
    files = sorted(p for p in folder.glob("*.txt") if p.name != "hallucinations.txt")
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
        for group in parse_phrase_file(path, problems):
            if group.id in groups:
                problems.append(f"{group.source}: duplicate group id [{group.id}] (first at {groups[group.id].source})")
                continue
            groups[group.id] = group
    rules_path = folder / "rules.toml"
    if not rules_path.exists():
        problems.append(f"{rules_path.name}: missing (the rule definitions)")
        specs, equivalences = [], DEFAULT_EQUIVALENCES
    else:
        digest.update(b"rules.toml\0" + rules_path.read_bytes())
        specs, equivalences = parse_rules_file(rules_path, list(groups), problems)
    if problems:
        raise LexiconError(problems)
    return LexiconSet(groups, tuple(specs), equivalences, digest.hexdigest()[:16], str(folder),
                      tuple(p.name for p in files) + ("rules.toml",))
