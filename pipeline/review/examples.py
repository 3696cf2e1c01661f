"""Example calls for trainers: the clearest failures and the cleanest passes of a rule, with the moment.

:func:`pick_examples` chooses calls from scored results; :func:`export_examples` cuts an audio clip
around each finding (both channels, with padding) and writes one self-contained HTML page (no network,
no scripts or styles from elsewhere) with the evidence, a transcript excerpt and a player that starts
at the finding, plus ``examples.json`` with the same content for other tools. A recording that cannot
be found or read is still listed, with the reason, in both.
"""

from __future__ import annotations

import html
import io
import json
import wave
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ClipError, ExampleSelectionError, StoreError
from ..records import MIN_ROLE_CONFIDENCE, ROLES_WORDS
from ..rules.lexicon import SEVERITIES
from ..storage.hashing import file_sha256
from ..text import on_disk
from ..transcribe.audio import TARGET_RATE, decode_audio
from .explore import Results, call_utterances, clock, plain, worst_severity

KINDS = ("worst", "best")


@dataclass
class Example:
    """One example call for a rule, with everything the training page shows."""

    rank: int
    kind: str  # worst | best
    rule_id: str
    rule_name: str
    call_id: str
    agent_id: str
    call_date: str
    started_at: str
    outcome: str
    evidence: str
    severity: str | None
    deduction: float | None
    score: float | None
    passed: bool | None
    red_line: bool | None
    at_s: float  # the moment of the finding in the call
    until_s: float
    findings: list[dict] = field(default_factory=list)  # speaker, start_s, phrase, matched_text, severity...
    excerpt: list[dict] = field(default_factory=list)  # speaker, start_s, end_s, text, at_finding
    channels: int | None = None
    agent_channel: str | None = None  # left | right | mono
    roles_method: str | None = None  # channels | diarised+words | none (calls.roles_method)
    roles_confidence: float | None = None  # mono: how sure the agent is the agent
    recording: str | None = None
    clip: str | None = None  # path of the clip relative to the page
    clip_start_s: float | None = None  # where the clip starts in the call
    play_from_s: float | None = None  # the finding's offset inside the clip
    audio_error: str | None = None  # why there is no clip
    warnings: list[str] = field(default_factory=list)


def pick_examples(results: Results, rule_id: str, kind: str = "worst", n: int = 5, agent: str | None = None,
                  min_severity: str | None = None) -> list[Example]:
    """The ``n`` clearest failures (``worst``) or cleanest passes (``best``) of ``rule_id``.

    Worst: failures, most serious finding first (severity 重 > 中 > 轻), then the most points deducted,
    red lines, and the lowest call score. Best: passes in calls that passed, highest score first, calls
    with the fewest other failures first. One example per call.

    Raises:
        ExampleSelectionError: unknown rule (not in the results), kind or severity.
    """
    if kind not in KINDS:
        raise ExampleSelectionError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if min_severity is not None and min_severity not in SEVERITIES:
        raise ExampleSelectionError(f"severity must be one of {' / '.join(SEVERITIES)}, not {min_severity!r}")
    known = sorted(set(results.rule_results["rule_id"]))
    if rule_id not in known:
        raise ExampleSelectionError(f"no results for rule {rule_id!r} in {results.out_dir}; rules there: "
                                    f"{', '.join(known)}")
    rr = results.rule_results[results.rule_results["rule_id"] == rule_id]
    calls = results.scored.set_index("call_id")
    rr = rr[rr["call_id"].isin(calls.index)]
    if agent is not None:
        rr = rr[rr["agent_id"] == agent]
    rr = rr[rr["outcome"] == ("fail" if kind == "worst" else "pass")]
    hits = results.hits[results.hits["rule_id"] == rule_id]
    hits_by_call = {cid: group for cid, group in hits.groupby("call_id")}
    rows = []
    failures = results.rule_results[results.rule_results["outcome"] == "fail"].groupby("call_id").size()
    for row in rr.itertuples():
        call = calls.loc[row.call_id]
        found = hits_by_call.get(row.call_id, hits.iloc[0:0])
        severity = worst_severity(found)
        if min_severity is not None and (severity is None or SEVERITIES.index(severity) < SEVERITIES.index(min_severity)):
            continue
        if kind == "best" and not call["passed"]:
            continue
        rows.append((row, call, found, severity, int(failures.get(row.call_id, 0))))
    if kind == "worst":
        rows.sort(key=lambda r: (-(SEVERITIES.index(r[3]) if r[3] else -1), -(0 if pd.isna(r[0].deduction) else r[0].deduction),
                                 -bool(r[1]["red_line"]), r[1]["score"], r[0].call_id))
    else:
        rows.sort(key=lambda r: (-r[1]["score"], r[4], r[0].call_id))
    return [_example(results, rank, kind, row, call, found, severity)
            for rank, (row, call, found, severity, _) in enumerate(rows[:n], start=1)]


def _example(results: Results, rank: int, kind: str, row, call, found: pd.DataFrame, severity) -> Example:
    at_s, until_s = row.at_s, row.until_s
    if pd.isna(at_s):  # nothing in particular to point at (no forbidden phrase said): the opening
        at_s, until_s = 0.0, min(float(call["duration_s"] or 0), 10.0)
    findings = [{k: plain(v) for k, v in h.items()} for h in found[
        ["speaker", "start_s", "end_s", "utterance_idx", "phrase", "matched_text", "match_kind", "category",
         "severity"]].sort_values("start_s").to_dict("records")]
    return Example(
        rank=rank, kind=kind, rule_id=row.rule_id, rule_name=results.rule_names.get(row.rule_id, row.rule_id),
        call_id=row.call_id, agent_id=row.agent_id, call_date=str(call["call_date"]),
        started_at=pd.Timestamp(call["started_at"]).isoformat(), outcome=row.outcome, evidence=row.evidence,
        severity=severity, deduction=None if pd.isna(row.deduction) else float(row.deduction),
        score=float(call["score"]), passed=bool(call["passed"]), red_line=bool(call["red_line"]),
        at_s=round(float(at_s), 3), until_s=round(float(until_s), 3), findings=findings,
        channels=None if pd.isna(call.get("channels")) else int(call["channels"]),
        agent_channel=call.get("agent_channel"), roles_method=plain(call.get("roles_method")),
        roles_confidence=plain(call.get("roles_confidence")), recording=None if pd.isna(call.get("path")) else call.get("path"))


def excerpt(utterances: pd.DataFrame, at_s: float, until_s: float, context_s: float = 8.0,
            max_lines: int = 10) -> list[dict]:
    """Utterances around a moment: those within ``context_s`` of it, marked when they overlap it."""
    near = utterances[(utterances["end_s"] >= at_s - context_s) & (utterances["start_s"] <= until_s + context_s)]
    lines = []
    for u in near.sort_values("start_s").itertuples():
        lines.append({"speaker": u.speaker, "start_s": float(u.start_s), "end_s": float(u.end_s), "text": u.text,
                      "utterance_idx": int(u.utterance_idx),
                      "role_confidence": plain(getattr(u, "role_confidence", None)),
                      "at_finding": bool(u.end_s >= at_s and u.start_s <= max(until_s, at_s + 0.01))})
    if len(lines) > max_lines:  # keep the lines nearest the moment
        centre = next((i for i, line in enumerate(lines) if line["at_finding"]), 0)
        first = max(0, min(centre - max_lines // 2, len(lines) - max_lines))
        lines = lines[first:first + max_lines]
    return lines


def focus_end(ex: Example, max_focus_s: float = 20.0) -> float:
    """Where the part of the call an example is about ends: its evidence span, stretched over the
    rule's further findings, at most ``max_focus_s`` after the first."""
    later = [f["end_s"] for f in ex.findings if f["start_s"] <= ex.at_s + max_focus_s]
    return min(max([ex.until_s, *later]), ex.at_s + max_focus_s)


def finding_audio(ex: Example, path: str | Path | None = None, before_s: float = 0.5, after_s: float = 3.0,
                  max_focus_s: float = 20.0) -> tuple[np.ndarray, float]:
    """The audio of an example from ``before_s`` before its finding to ``after_s`` after it (the finding
    itself cut at ``max_focus_s``), every channel, 16 kHz.

    Returns:
        ``(samples, start_s)``: float samples shaped (channels, n) and where they start in the call.

    Raises:
        ClipError: the recording cannot be decoded, or ends before the finding.
    """
    path = on_disk(path or ex.recording or "")
    try:
        audio = decode_audio(path)
    except Exception as exc:
        raise ClipError(f"cannot decode {path.name}: {exc}") from exc
    start = max(0.0, ex.at_s - before_s)
    end = min(audio.duration_s, focus_end(ex, max_focus_s) + after_s)
    if end <= start:
        raise ClipError(f"the finding at {ex.at_s:.1f} s is past the end of the recording ({audio.duration_s:.1f} s)")
    return audio.channels_data[:, int(start * TARGET_RATE):int(end * TARGET_RATE)], start


def wav_bytes(samples: np.ndarray) -> bytes:
    """Float samples (channels, n) in [-1, 1] as a 16 kHz 16-bit PCM WAV file's bytes."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").T.copy()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(samples.shape[0])
        out.setsampwidth(2)
        out.setframerate(TARGET_RATE)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def write_clip(samples: np.ndarray, target: Path) -> None:
    """Write float samples (channels, n) in [-1, 1] as a 16 kHz 16-bit PCM WAV file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(wav_bytes(samples))


def export_examples(results: Results, examples: list[Example], out_dir: str | Path, recordings_dir: str | Path | None = None,
                    pad_s: float = 3.0, max_focus_s: float = 20.0, title: str | None = None) -> Path:
    """Cut a clip per example and write ``index.html`` and ``examples.json`` into ``out_dir``.

    Each clip runs from ``pad_s`` before the finding to ``pad_s`` after it, or after the rule's last
    further finding within ``max_focus_s``, with every channel of the recording. ``recordings_dir`` finds recordings that
    were moved since they were scored: the call's ``file`` is looked up under it.

    Returns:
        The path of ``index.html``.
    """
    out_dir = Path(out_dir)
    try:
        (out_dir / "clips").mkdir(parents=True, exist_ok=True)
        for old in (out_dir / "clips").glob("*.wav"):  # a new export replaces the last one's clips
            old.unlink()
    except OSError as exc:
        raise StoreError(f"cannot write examples into {out_dir}: {exc}") from None
    calls = results.calls.set_index("call_id")
    for ex in examples:
        call = calls.loc[ex.call_id]
        ex.excerpt = excerpt(call_utterances(results, ex.call_id, ex.call_date), ex.at_s, focus_end(ex, max_focus_s))
        path = Path(recordings_dir) / call["file"] if recordings_dir else (Path(ex.recording) if ex.recording else None)
        if path is None:
            ex.audio_error = "the results do not say where the recording is (written before schema 1.3): " \
                             "give the recordings folder (--recordings)"
            continue
        ex.recording = str(path)
        if not path.exists():
            ex.audio_error = f"recording not found: {path}" + ("" if recordings_dir else " (moved? give --recordings)")
            continue
        try:
            samples, start = finding_audio(ex, path, pad_s, pad_s, max_focus_s)
        except ClipError as exc:  # a damaged or short recording is reported on the page, never fatal
            ex.audio_error = str(exc)
            continue
        if call.get("content_sha256") and file_sha256(path) != call["content_sha256"]:
            ex.warnings.append("the recording has changed since it was scored: the clip may not match")
        name = f"clips/{ex.rank:02d}_{_safe(ex.call_id)}_{int(ex.at_s * 10):05d}.wav"
        write_clip(samples, out_dir / name)
        ex.clip, ex.clip_start_s, ex.play_from_s = name, round(start, 3), round(ex.at_s - start, 3)
    title = title or "callqa 培训示例"
    made = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (out_dir / "examples.json").write_text(json.dumps(
        {"title": title, "made_at": made, "results": str(results.out_dir), "period": results.period,
         "examples": [asdict(e) for e in examples]}, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    page = out_dir / "index.html"
    page.write_text(render_page(title, made, results, examples), encoding="utf-8")
    return page


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)[:60]


SPEAKER_NAMES = {"agent": "坐席", "customer": "客户", "unknown": "录音", "other": "第三方"}

_STYLE = """
body{font-family:"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;margin:2em auto;max-width:60em;
color:#222;line-height:1.5;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} .meta{color:#666;font-size:.9em}
.example{border:1px solid #ddd;border-radius:8px;padding:1em 1.2em;margin:1.2em 0}
.example.worst{border-left:6px solid #c0392b} .example.best{border-left:6px solid #2e8b57}
.example h2{font-size:1.15em;margin:0 0 .4em}
.badge{display:inline-block;padding:0 .5em;border-radius:4px;font-size:.85em;margin-right:.4em;background:#eee}
.badge.fail{background:#fbe3e0;color:#a02c1f} .badge.pass{background:#e0f3e8;color:#1e6b41}
.badge.red{background:#c0392b;color:#fff}
.evidence{background:#f7f7f7;padding:.4em .7em;border-radius:4px;font-size:.92em}
table.excerpt{border-collapse:collapse;width:100%;margin:.6em 0;font-size:.95em}
table.excerpt td{padding:.2em .5em;vertical-align:top;border-bottom:1px solid #f0f0f0}
td.time{color:#888;white-space:nowrap;width:4.5em} td.who{white-space:nowrap;width:3em;font-weight:bold}
tr.agent td.who{color:#2f6db5} tr.customer td.who{color:#e08a2c} tr.other td.who{color:#7d5ba6}
tr.at td{background:#fff6d6}
mark{background:#ffd54f;padding:0 .1em} .warn{color:#a0522d} .error{color:#c0392b;font-weight:bold}
audio{width:100%;margin-top:.4em} button{margin:.3em 0;padding:.2em .8em}
"""

_SCRIPT = """
document.querySelectorAll('audio[data-play-from]').forEach(function (a) {
  var from = parseFloat(a.dataset.playFrom);
  a.addEventListener('loadedmetadata', function () {
    a.dataset.state = 'ok'; a.dataset.duration = a.duration.toFixed(2);
    if (a.currentTime < from) { a.currentTime = from; }
  });
  a.addEventListener('error', function () {
    a.dataset.state = 'error';
    var note = document.createElement('p'); note.className = 'error';
    note.textContent = '音频无法播放：' + a.getAttribute('src'); a.after(note);
  });
  var button = document.getElementById(a.id + '-from');
  if (button) { button.addEventListener('click', function () { a.currentTime = from; a.play(); }); }
});
"""


def _highlight(text: str, phrases: list[str]) -> str:
    """Escape ``text`` and mark every occurrence of the matched phrases in it."""
    spans = []
    for phrase in {p for p in phrases if p}:
        start = text.find(phrase)
        while start >= 0:
            spans.append((start, start + len(phrase)))
            start = text.find(phrase, start + 1)
    out, cursor = [], 0
    for start, end in sorted(spans):
        if start < cursor:
            continue
        out += [html.escape(text[cursor:start]), "<mark>", html.escape(text[start:end]), "</mark>"]
        cursor = end
    out.append(html.escape(text[cursor:]))
    return "".join(out)


def _channels_note(ex: Example) -> str:
    if ex.channels != 2:
        if ex.roles_method == ROLES_WORDS and ex.roles_confidence is not None:
            return f"单声道录音：按声音分出说话人，按所说内容认定坐席（把握 {ex.roles_confidence:.2f}）"
        return "单声道录音（未分说话人）"
    agent_left = ex.agent_channel != "right"
    return f"立体声：左声道{'坐席' if agent_left else '客户'}，右声道{'客户' if agent_left else '坐席'}"


def _who(line: dict) -> str:
    """Who said a transcript line; a line whose speaker is not trusted (a mono split below
    ``MIN_ROLE_CONFIDENCE``) gets a question mark and its confidence on hover."""
    name = SPEAKER_NAMES.get(line["speaker"], html.escape(str(line["speaker"])))
    confidence = line.get("role_confidence")
    if confidence is not None and confidence < MIN_ROLE_CONFIDENCE:
        return f'<span title="说话人把握 {confidence:.2f}">{name}？</span>'
    return name


def _render_example(ex: Example) -> str:
    e = html.escape
    outcome = "不合格" if ex.outcome == "fail" else "合格"
    badges = [f'<span class="badge {e(ex.outcome)}">{outcome}</span>']
    if ex.severity:
        badges.append(f'<span class="badge">严重程度 {e(ex.severity)}</span>')
    if ex.deduction:
        badges.append(f'<span class="badge">扣 {ex.deduction:g} 分</span>')
    badges.append(f'<span class="badge">通话得分 {ex.score:g}</span>')
    if ex.red_line:
        badges.append('<span class="badge red">红线</span>')
    said = [f["matched_text"] for f in ex.findings]
    rows = "".join(
        f'<tr class="{e(line["speaker"])}{" at" if line["at_finding"] else ""}"><td class="time">{clock(line["start_s"])}</td>'
        f'<td class="who">{_who(line)}</td>'
        f'<td>{_highlight(line["text"], said if line["at_finding"] else [])}</td></tr>' for line in ex.excerpt)
    finding_list = "".join(
        f'<li>{clock(f["start_s"])} {SPEAKER_NAMES.get(f["speaker"], e(str(f["speaker"])))}说“{e(f["matched_text"])}”'
        f'（词条 {e(f["phrase"])}，{e(f["match_kind"])}{"，" + e(f["category"]) if f.get("category") else ""}'
        f'{"，" + e(f["severity"]) if f.get("severity") else ""}）</li>' for f in ex.findings)
    if ex.clip:
        audio_id = f"audio-{ex.rank}"
        player = (f'<audio id="{audio_id}" controls preload="metadata" data-play-from="{ex.play_from_s:.2f}" '
                  f'src="{e(ex.clip)}#t={ex.play_from_s:.2f}"></audio>'
                  f'<button id="{audio_id}-from" type="button">从问题处播放（通话 {clock(ex.at_s)}）</button>'
                  f'<span class="meta"> 片段从通话 {clock(ex.clip_start_s)} 开始；{_channels_note(ex)}</span>')
    else:
        player = f'<p class="error">没有音频：{e(ex.audio_error or "unknown")}</p>'
    warnings = "".join(f'<p class="warn">注意：{e(w)}</p>' for w in ex.warnings)
    return (f'<section class="example {e(ex.kind)}" id="example-{ex.rank}" data-call-id="{e(ex.call_id)}">'
            f'<h2>#{ex.rank} 通话 {e(ex.call_id)} · 坐席 {e(ex.agent_id)} · {e(ex.call_date)} · 问题时间 {clock(ex.at_s)}</h2>'
            f'<p>{"".join(badges)}</p><p class="evidence">依据：{e(ex.evidence)}</p>'
            + (f"<ul>{finding_list}</ul>" if finding_list else "")
            + f'{player}{warnings}<table class="excerpt">{rows}</table></section>')


def render_page(title: str, made: str, results: Results, examples: list[Example]) -> str:
    """The training page: every example with its badges, evidence, findings, player and transcript excerpt."""
    e = html.escape
    first = examples[0] if examples else None
    heading = (f"{e(first.rule_name)}（{e(first.rule_id)}）· {'反面示例（最差）' if first.kind == 'worst' else '正面示例（最佳）'}"
               if first else "没有符合条件的通话")
    body = "".join(_render_example(ex) for ex in examples) or (
        '<p class="empty">没有符合条件的通话：这条规则在所选范围内没有这类结果。</p>')
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
            f'<body data-examples="{len(examples)}"><h1>{e(title)}</h1><h2 class="rule">{heading}</h2>'
            f'<p class="meta">结果目录 {e(str(results.out_dir))} · 通话日期 {e(results.period)} · 生成于 {e(made)} · '
            f'{len(examples)} 个示例</p>{body}<script>{_SCRIPT}</script></body></html>')
