"""How else 您好 against 你好 could be read from the audio: six ways of scoring the opening, by AUC.

    python benchmarks/verify/greeting_variants.py benchmarks/verify/test

For each call of a corpus with truth whose first agent turn starts with 您好 or 你好, the turn's audio
(from the truth's times, 0.2 s before to 0.3 s after) is encoded padded to 10 s or to 30 s, with the
decoder started without timestamps (as pipeline/verify does) or with them, and the difference
log P(您…) − log P(你…) is read three ways: ``first`` the first character's distribution (what
pipeline/verify/scorer.py reads), ``pair`` the two tokens of the word, ``full`` the whole turn as the
truth writes it with the greeting swapped (what CTranslate2's ``align`` would score). Prints each
variant's AUC and range, then per agent voice; and, per opening text, the ``full`` margins, which show
whether a separation comes from the sound or from how well the rest of the sentence suits the greeting.
"""
import json
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pipeline.config import load_config
from pipeline.transcribe.model import load_model
from pipeline.transcribe.audio import decode_audio, TARGET_RATE
from faster_whisper.tokenizer import Tokenizer
import ctranslate2

corpus = Path(sys.argv[1])
cfg = load_config()
m = load_model(cfg.asr)
w = m.whisper
tok = Tokenizer(w.hf_tokenizer, True, task="transcribe", language="zh")
start_nots = list(tok.sot_sequence) + [tok.no_timestamps]
start_ts = list(tok.sot_sequence) + [tok.timestamp_begin]

def encode(samples, pad_s):
    length = int(pad_s * TARGET_RATE)
    padded = np.zeros(max(length, samples.size), dtype=np.float32); padded[:samples.size] = samples
    padded = padded[:480000]
    feats = w.feature_extractor(padded)[:, : padded.size // 160]
    return w.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None])), to_cpu=True)

def seq_logprob(enc, start, text):
    toks = tok.encode(text)
    prompt = start + toks
    r = w.model.generate(enc, [prompt + [tok.eot]], max_length=2*len(prompt)+4, beam_size=1,
                         return_logits_vocab=True, suppress_blank=False, suppress_tokens=[])[0]
    L = r.logits[0]
    lp = []
    for i, t in enumerate(toks):
        row = np.asarray(L[i], dtype=np.float64)  # distribution predicting token i
        lp.append(row[t] - np.logaddexp.reduce(row[:tok.eot]))
    return np.array(lp), toks

def firstchar(enc, start):
    r = w.model.generate(enc, [start + [tok.eot]], max_length=len(start)*2+4, beam_size=1,
                         return_logits_vocab=True, suppress_blank=False, suppress_tokens=[])[0]
    row = np.asarray(r.logits[0][0], dtype=np.float64)
    from pipeline.verify.scorer import _tokens_by_first_char
    by, _ = _tokens_by_first_char(tok)
    z = np.logaddexp.reduce(row[:tok.eot])
    return (np.logaddexp.reduce(row[by["您"]]) - z) - (np.logaddexp.reduce(row[by["你"]]) - z)

rows = []
for f in sorted((corpus / "truth").glob("*.json")):
    t = json.loads(f.read_text())
    op = t["turns"][0]
    if op["speaker"] != "agent" or op["text"][:2] not in ("您好", "你好"):
        continue
    audio = decode_audio(corpus / "recordings" / t["file"])
    ch = 0 if t.get("agent_channel", "left") == "left" else 1
    s = audio.channels_data[ch]
    a, b = int(max(0, op["start_s"] - 0.2) * TARGET_RATE), int((op["end_s"] + 0.3) * TARGET_RATE)
    clip = s[a:b]
    rest = op["text"][2:]
    res = {"call": t["call_id"], "agent": t["agent_id"], "said": op["text"][:2], "rest": rest}
    for pad in (10, 30):
        enc = encode(clip, pad)
        for sname, st in (("nots", start_nots), ("ts", start_ts)):
            res[f"first_{pad}_{sname}"] = firstchar(enc, st)
            lp_n, _ = seq_logprob(enc, st, "您好" + rest)
            lp_i, _ = seq_logprob(enc, st, "你好" + rest)
            res[f"full_{pad}_{sname}"] = lp_n.sum() - lp_i.sum()
            lp_n2, _ = seq_logprob(enc, st, "您好")
            lp_i2, _ = seq_logprob(enc, st, "你好")
            res[f"pair_{pad}_{sname}"] = lp_n2.sum() - lp_i2.sum()
    rows.append(res)

def auc(pos, neg):
    pos, neg = np.array(pos), np.array(neg)
    return ((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
keys = [k for k in rows[0] if k not in ("call", "agent", "said", "rest")]
print("variant", "AUC", "ninhao range", "nihao range")
for k in keys:
    pos = [r[k] for r in rows if r["said"] == "您好"]; neg = [r[k] for r in rows if r["said"] == "你好"]
    print(f"{k:16s} {auc(pos,neg):.3f}  {min(pos):+.2f}..{max(pos):+.2f}  {min(neg):+.2f}..{max(neg):+.2f}")
for ag in sorted({r["agent"] for r in rows}):
    pos = [r["first_10_nots"] for r in rows if r["said"] == "您好" and r["agent"] == ag]
    neg = [r["first_10_nots"] for r in rows if r["said"] == "你好" and r["agent"] == ag]
    if pos and neg: print(ag, f"first_10_nots AUC {auc(pos,neg):.3f} n={len(pos)}/{len(neg)}")
print("full_10_nots per opening text (您好 | 你好):")
for rest in sorted({r["rest"] for r in rows}):
    pos = sorted(round(r["full_10_nots"], 1) for r in rows if r["rest"] == rest and r["said"] == "您好")
    neg = sorted(round(r["full_10_nots"], 1) for r in rows if r["rest"] == rest and r["said"] == "你好")
    print(f"  X好{rest}: {pos} | {neg}")
