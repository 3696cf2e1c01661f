"""Loading and validating ``lexicons/``: phrase lists (``*.txt``) and rule definitions (``rules.toml``).

Everything is checked on load. A typo, an unknown option, an empty phrase, a duplicate id or a rule
that names a missing phrase group is a :class:`~pipeline.errors.LexiconError` that lists every problem
found, each with its file and line, so a QA manager fixes them in one go. Each rule's options are
built into the dataclass of its type (:mod:`pipeline.rules.options`) by the same validator as the
configuration. The file format is described in ``lexicons/README.md``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import LEXICONS_DIR
from ..errors import LexiconError
from ..text import match_key
from ..validation import Source, build_options
from .options import RULE_TYPES, RuleOptions
from .verification import VerifyOptions
from .scorefile import load_score

SEVERITIES = ("轻", "中", "重")
PHRASE_KINDS = ("phrase", "asr_variant")
_GROUP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_GROUP_OPTIONS = ("category", "severity", "sound", "inside", "dialect", "mismatch")
_PHRASE_OPTIONS = ("except", "sound", "inside", "kind", "at", "confusable", "bias")
PHRASE_POSITIONS = ("anywhere", "start")
COMPANY_PLACEHOLDER = "{company}"
GAP = re.compile(r"…+|\.\.\.+")  # 拨打…咨询: the parts in this order, at most GAP_CHARS characters apart
GAP_CHARS = 12


def phrase_parts(text: str) -> list[str]:
    """The parts of a phrase around its gaps (one part for a phrase without ``…``)."""
    return [part.strip() for part in GAP.split(text)]


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
    # what speech recognition writes for it, or what it is heard as, where it was not said: the rivals it
    # is scored against on the audio (pipeline.verify), with the pinyin neighbours from the dictionary
    confusables: tuple[str, ...] = ()
    # added to its margin on the audio before the [verify] band decides: how much the speech model's
    # language model under-rates it where it is said (calibrated, benchmarks/verify/calibrate.py)
    bias: float | None = None  # None: rules.toml [verify] default_bias


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
    """One rule of ``rules.toml``: its id, type, typed options and how it is shown."""

    rule_id: str
    type: str
    options: RuleOptions
    description: str
    source: str  # rules.toml:line
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
    scores: dict[str, Any] = field(default_factory=dict)  # score files rules name (putonghua.toml), read
    verify: VerifyOptions = field(default_factory=VerifyOptions)  # rules.toml [verify]: how checks decide

    def select(self, patterns: list[str]) -> list[Group]:
        """The groups whose ids match any of the patterns (``forbidden.*``), in file order."""
        return [g for gid, g in self.groups.items() if any(fnmatch.fnmatchcase(gid, p) for p in patterns)]


# Lists in the lexicon folder that are not rule phrase groups: the hallucination guard's phrases and
# the agent's phrases that tell the voices of a mono recording apart (both read by the first half).
NOT_PHRASE_GROUPS = {"hallucinations.txt", "roles.txt"}


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

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{name}: cannot read: {exc}")
        return groups
    for number, raw in enumerate(lines, 1):
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
                   "at": "anywhere", "confusable": (), "bias": None}
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
            elif key == "bias":
                try:
                    options["bias"] = float(value)
                except ValueError:
                    problems.append(f"{where}: bias must be a number (nats added to the margin on the audio)")
            elif key == "at":
                if value not in PHRASE_POSITIONS:
                    problems.append(f"{where}: at must be one of {', '.join(PHRASE_POSITIONS)}")
                options["at"] = value
            else:
                listed = tuple(e.strip() for e in value.split(",") if e.strip())
                if not listed or any(not match_key(e) for e in listed):
                    problems.append(f"{where}: {key}= needs comma-separated phrases with letters or digits")
                options[key] = listed
        if not match_key(text.replace(COMPANY_PLACEHOLDER, "x")):
            problems.append(f"{where}: empty phrase {text!r} (no letters or digits)")
            continue
        if any(not match_key(part.replace(COMPANY_PLACEHOLDER, "x")) for part in phrase_parts(text)):
            problems.append(f"{where}: {text!r}: a gap (…) must stand between two parts with letters or digits")
            continue
        if text in current["seen"]:
            problems.append(f"{where}: phrase {text!r} appears twice in [{current['id']}]")
            continue
        current["seen"].add(text)
        current["phrases"].append(Phrase(current["id"], text, options["except"], options["sound"],
                                         options["inside"], options["kind"], where, options["at"],
                                         options["confusable"], options["bias"]))
    close()
    return groups


_COMMON = ("type", "name", "description", "enabled")
DEFAULT_EQUIVALENCES = ("in=ing", "en=eng", "z=zh", "c=ch", "s=sh", "n=l", "f=h", "an=ang")


def lexicon_fields(options: RuleOptions) -> list[str]:
    """The options of a rule that name phrase groups."""
    return [f.name for f in fields(options) if f.metadata.get("lexicon")]


def parse_rules_file(path: Path, group_ids: list[str],
                     problems: list[str]) -> tuple[list[RuleSpec], tuple[str, ...], VerifyOptions]:
    """Parse and check ``rules.toml`` against the rule types and the known phrase groups.

    Problems are appended (``rules.toml:LINE: …``), not raised, so that every one is reported.

    Returns:
        The enabled rules, in file order, the sound equivalences and how checks against the audio
        decide (``[verify]``).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path.name}: cannot read: {exc}")
        return [], DEFAULT_EQUIVALENCES, VerifyOptions()
    source = Source(path.name, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path.name}: not valid TOML: {exc}")
        return [], DEFAULT_EQUIVALENCES, VerifyOptions()
    for key in data:
        if key not in ("rules", "sound", "verify"):
            problems.append(f"{source.where((key,))}: unknown top-level table [{key}] "
                            "(known: [rules.\"id\"], [sound], [verify])")
    verify = build_options(VerifyOptions, data.get("verify", {}), source, ("verify",), "[verify]",
                           problems) or VerifyOptions()
    equivalences = tuple(data.get("sound", {}).get("equivalences", DEFAULT_EQUIVALENCES))
    for pair in equivalences:
        if not isinstance(pair, str) or not re.fullmatch(r"[a-z]+=[a-z]+", pair):
            problems.append(f"{source.where(('sound',), 'equivalences')}: [sound] equivalence {pair!r} must look "
                            "like in=ing")
    specs = []
    for rule_id, table in data.get("rules", {}).items():
        where = source.where(("rules", rule_id))
        label = f"rule {rule_id!r}"
        if not isinstance(table, dict):
            problems.append(f"{where}: rules.{rule_id} must be a table")
            continue
        rtype = table.get("type")
        if rtype not in RULE_TYPES:
            problems.append(f"{source.where(('rules', rule_id), 'type')}: {label} has unknown type {rtype!r}; "
                            f"known: {', '.join(RULE_TYPES)}")
            continue
        for key in ("name", "description"):
            if key in table and not isinstance(table[key], str):
                problems.append(f"{source.where(('rules', rule_id), key)}: {label}: {key} must be text")
        if "enabled" in table and not isinstance(table["enabled"], bool):
            problems.append(f"{source.where(('rules', rule_id), 'enabled')}: {label}: enabled must be true or false")
        options = build_options(RULE_TYPES[rtype], {k: v for k, v in table.items() if k not in _COMMON}, source,
                                ("rules", rule_id), label, problems)
        if options is None:
            continue
        for key in lexicon_fields(options):
            for pattern in getattr(options, key):
                if not any(fnmatch.fnmatchcase(g, pattern) for g in group_ids):
                    problems.append(f"{source.where(('rules', rule_id), key)}: {label}: no phrase group matches "
                                    f"{pattern!r}")
        if table.get("enabled", True) is False:
            continue
        specs.append(RuleSpec(rule_id, rtype, options, str(table.get("description", "")), where,
                              str(table.get("name") or rule_id)))
    return specs, equivalences, verify


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
    files = sorted(p for p in folder.glob("*.txt") if p.name not in NOT_PHRASE_GROUPS)
    for path in files:
        try:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        except OSError as exc:
            problems.append(f"{path.name}: cannot read: {exc}")
            continue
        for group in parse_phrase_file(path, problems):
            if group.id in groups:
                problems.append(f"{group.source}: duplicate group id [{group.id}] (first at {groups[group.id].source})")
                continue
            groups[group.id] = group
    rules_path = folder / "rules.toml"
    if not rules_path.exists():
        problems.append(f"{rules_path.name}: missing (the rule definitions)")
        specs, equivalences, verify = [], DEFAULT_EQUIVALENCES, VerifyOptions()
    else:
        specs, equivalences, verify = parse_rules_file(rules_path, list(groups), problems)
        if not problems:
            digest.update(b"rules.toml\0" + rules_path.read_bytes())
    scores = _score_files(folder, specs, problems, digest)
    if problems:
        raise LexiconError(problems)
    return LexiconSet(groups, tuple(specs), equivalences, digest.hexdigest()[:16], str(folder),
                      tuple(p.name for p in files) + ("rules.toml",) + tuple(scores), scores, verify)


def _score_files(folder: Path, specs: list[RuleSpec], problems: list[str], digest) -> dict[str, Any]:
    """The score files the rules name (``score_file``), read and checked, and hashed into the version."""
    scores: dict[str, Any] = {}
    for spec in specs:
        name = getattr(spec.options, "score_file", "")
        if not name or name in scores:
            continue
        try:
            scores[name] = load_score(folder / name)
            digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
        except ValueError as exc:
            problems.append(f"{spec.source}: {spec.rule_id}: {exc}")
    return scores
