"""Charts for the QA notebooks, drawn with matplotlib in a CJK font so that Chinese labels are characters.

Every function takes a frame from :mod:`pipeline.review.explore` and returns a matplotlib ``Figure`` made
outside pyplot (save it with ``fig.savefig``; no GUI backend is involved).
:func:`use_cjk_font` must find a font with Chinese glyphs (Debian: ``apt-get install fonts-noto-cjk``)
or it raises, rather than letting matplotlib draw boxes.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..errors import CJKFontMissingError
from ..records import ROLES_NONE, ROLES_WORDS
from .explore import CallDetail, plain

# families tried in order: Noto/Source Han (Debian fonts-noto-cjk), WenQuanYi, then common desktop fonts
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "Source Han Sans CN",
                "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Microsoft YaHei", "PingFang SC", "SimHei")
CJK_FONT_FILES = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
                  "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
AGENT, CUSTOMER, HOLD, FAIL, PASS = "#2f6db5", "#e08a2c", "#bbbbbb", "#c0392b", "#2e8b57"
OTHER = "#7d5ba6"


def use_cjk_font() -> str:
    """Make matplotlib draw text in a font that has Chinese characters; returns the family used.

    ``CALLQA_CJK_FONT`` may name a font file to use instead.

    Raises:
        CJKFontMissingError: no such font is installed.
    """
    extra = [os.environ["CALLQA_CJK_FONT"]] if os.environ.get("CALLQA_CJK_FONT") else []
    for path in [*extra, *CJK_FONT_FILES]:
        if Path(path).exists():
            font_manager.fontManager.addfont(path)
    if extra and not Path(extra[0]).exists():
        raise CJKFontMissingError(f"CALLQA_CJK_FONT={extra[0]}: no such font file")
    installed = {f.name for f in font_manager.fontManager.ttflist}
    if extra:
        family = font_manager.FontProperties(fname=extra[0]).get_name()
    else:
        family = next((name for name in CJK_FAMILIES if name in installed), None)
    if family is None:
        raise CJKFontMissingError(
            "no font with Chinese characters is installed, so chart labels would be boxes: install one "
            "(Debian/Ubuntu: apt-get install fonts-noto-cjk) or set CALLQA_CJK_FONT to a .ttf/.otf/.ttc file")
    matplotlib.rcParams["font.family"] = "sans-serif"
    matplotlib.rcParams["font.sans-serif"] = [family, "DejaVu Sans"]
    matplotlib.rcParams["axes.unicode_minus"] = False  # the CJK fonts lack U+2212
    return family


def _figure(width: float, height: float):
    """A figure outside pyplot: no global state, no GUI backend, nothing shown twice in a notebook."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def leaderboard_chart(board, pass_mark: float = 80) -> Figure:
    """Mean score per agent (best on top), pass mark line; labels give pass rate and red lines."""
    board = board.sort_values("mean_score")
    fig, ax = _figure(8, 0.5 * len(board) + 1.5)
    colours = [FAIL if red else AGENT for red in board["red_lines"] > 0]
    bars = ax.barh(board["agent_id"].astype(str), board["mean_score"], color=colours)
    for bar, (_, row) in zip(bars, board.iterrows()):
        ax.text(bar.get_width() + 1, bar.get_y() + bar.get_height() / 2,
                f"{row['mean_score']:.1f} 分 · 合格率 {row['pass_rate']:.0%} · 红线 {int(row['red_lines'])} · {row['calls']} 通",
                va="center", fontsize=9)
    ax.axvline(pass_mark, color="grey", linestyle="--", linewidth=1, label=f"合格线 {pass_mark:g}")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 140)
    ax.set_xlabel("平均得分")
    ax.set_title("坐席排行榜（红色：有红线违规）")
    return fig


def rule_failure_chart(rates) -> Figure:
    """Failure rate per rule, with each rule's Chinese name and counts."""
    rates = rates[rates["applicable"] > 0].sort_values("fail_rate")
    fig, ax = _figure(8, 0.4 * len(rates) + 1.5)
    labels = [f"{row['name']}  ({row['rule_id']})" for _, row in rates.iterrows()]
    bars = ax.barh(labels, rates["fail_rate"].fillna(0) * 100, color=FAIL)
    for bar, (_, row) in zip(bars, rates.iterrows()):
        ax.text(bar.get_width() + 1, bar.get_y() + bar.get_height() / 2,
                f"{int(row['failed'])}/{int(row['applicable'])}", va="center", fontsize=8)
    ax.set_xlim(0, 110)
    ax.set_xlabel("不合格率 %（不适用的通话不计）")
    ax.set_title("各规则不合格率")
    return fig


def trend_chart(trend, freq: str = "day") -> Figure:
    """Mean score and pass rate per period, with the number of calls as bars."""
    fig, ax = _figure(8, 3.8)
    x = list(range(len(trend)))
    calls_axis = ax.twinx()
    calls_axis.bar(x, trend["calls"], color="#dddddd", zorder=0)
    calls_axis.set_ylabel("通话数")
    ax.set_zorder(calls_axis.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(x, trend["mean_score"], marker="o", color=AGENT, label="平均得分")
    ax.plot(x, trend["pass_rate"] * 100, marker="s", color=PASS, label="合格率 %")
    ax.set_xticks(x, trend["period"], rotation=30 if len(x) > 4 else 0)
    ax.set_ylim(0, 105)
    ax.legend(loc="lower left")
    ax.set_title("按日趋势" if freq == "day" else "按周趋势")
    return fig


def score_distribution_chart(scored, pass_mark: float = 80) -> Figure:
    """Histogram of call scores, with the pass mark."""
    fig, ax = _figure(8, 3.5)
    ax.hist(scored["score"].dropna(), bins=range(0, 105, 5), color=AGENT, edgecolor="white")
    ax.axvline(pass_mark, color=FAIL, linestyle="--", linewidth=1, label=f"合格线 {pass_mark:g}")
    ax.set_xlabel("通话得分")
    ax.set_ylabel("通话数")
    ax.legend(loc="upper left")
    ax.set_title("得分分布")
    return fig


def roles_note(call: dict) -> str:
    """How a mono call's speakers were told apart, for a title ("" for stereo)."""
    method, confidence = call.get("roles_method"), plain(call.get("roles_confidence"))
    if method == ROLES_WORDS and confidence is not None:
        return f" · 单声道：按声音分人、按话语认坐席（把握 {float(confidence):.2f}）"
    if method == ROLES_NONE:
        return " · 单声道：未分说话人"
    return ""


def timeline_chart(detail: CallDetail, rule_names: dict[str, str] | None = None) -> Figure:
    """One call on a time axis: each channel's speech (voice activity) and utterances, the holds
    (mutual silences), and where each failed rule's evidence is."""
    names = rule_names or {}
    duration = float(detail.call.get("duration_s") or 0) or float(detail.voice_activity["end_s"].max())
    fig, ax = _figure(11, 3.6)
    lanes = {"agent": (2.0, AGENT, "坐席"), "customer": (1.0, CUSTOMER, "客户"), "unknown": (1.5, AGENT, "单声道"),
             "other": (1.5, OTHER, "第三方")}  # unknown: mono, voices not split; other: a third voice of a mono call
    for speaker, (y, colour, _) in lanes.items():
        spans = detail.voice_activity[detail.voice_activity["speaker"] == speaker]
        if len(spans):
            ax.broken_barh(list(zip(spans["start_s"], spans["end_s"] - spans["start_s"])), (y - 0.3, 0.6),
                           facecolors=colour, alpha=0.9)
        said = detail.utterances[detail.utterances["speaker"] == speaker]
        if len(said):
            ax.broken_barh(list(zip(said["start_s"], said["end_s"] - said["start_s"])), (y - 0.4, 0.8),
                           facecolors="none", edgecolors=colour, linewidth=0.8)
    for start, end in detail.holds:
        ax.axvspan(start, end, color=HOLD, alpha=0.35, zorder=0)
        ax.text((start + end) / 2, 2.55, f"静音/保持 {end - start:.0f}s", ha="center", fontsize=8, color="#555555")
    failed = detail.failed.dropna(subset=["at_s"])
    moments: dict[float, list[str]] = {}
    for row in failed.sort_values(["at_s", "rule_id"]).itertuples():  # rules failing at one moment share a label
        moments.setdefault(round(float(row.at_s), 1), []).append(names.get(row.rule_id, row.rule_id))
    for i, (at, labels) in enumerate(sorted(moments.items())):
        ax.axvline(at, color=FAIL, linewidth=1.2)
        ax.text(at, 0.35 - 0.22 * (i % 2), " " + "、".join(labels), color=FAIL, fontsize=8, va="center")
    used = [s for s in lanes if (detail.voice_activity["speaker"] == s).any()]
    ax.set_yticks([lanes[s][0] for s in used], [lanes[s][2] for s in used])
    ax.set_ylim(0, 2.8)
    ax.set_xlim(0, duration)
    ax.set_xlabel("通话时间（秒）")
    ax.legend(handles=[Patch(color=AGENT, label="坐席说话"), Patch(color=CUSTOMER, label="客户说话"),
                       Patch(color=HOLD, alpha=0.35, label="双方静音（保持）"), Patch(color=FAIL, label="不合格项")],
              loc="upper right", fontsize=8, ncols=4, bbox_to_anchor=(1, 1.25))
    ax.set_title(f"通话 {detail.call['call_id']} · 坐席 {detail.call['agent_id']} · 得分 {detail.call.get('score')}"
                 + roles_note(detail.call), loc="left")
    return fig
