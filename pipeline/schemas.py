"""One explicit pyarrow schema per output table, with a version. Defined here and nowhere else.

Every table is a Hive-partitioned Parquet dataset under ``OUT_DIR/<table>/call_date=YYYY-MM-DD/``; the
partition column ``call_date`` is in the directory names, not in the files. Bump ``SCHEMA_VERSION``
when a column changes meaning or type; adding a nullable column at the end is a minor change.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1.10"  # 1.1: scores on calls, deductions on rule_results, agent_scores
# 1.2: content_sha256 and transcription fingerprint on calls (incremental nights)
# 1.3: at_s / until_s on rule_results (where in the call the evidence is: the moment to play), and
#      the recording's absolute path on calls
# 1.4: error_stage on calls (the stage a failed recording failed at; "rules" when a rule crashed on
#      it, which a rescore retries)
# 1.5: calls.status "unscorable" (transcribed, but no whole conversation to score) with status_reason;
#      calls.truncated; calls rows for inputs rejected before processing; agent_scores.unscorable_calls
# 1.6: mono recordings split into speakers: utterances.role_confidence, calls.roles_method and
#      roles_confidence; speaker "other" (a third voice)
# 1.7: calls.agent_zh_prob (how Chinese the agent's speech sounded to the model: dialect.putonghua);
#      rule_results.outcome "review"
# 1.8: human review: the reviews table (appended, never rewritten); rule_results.verdict and
#      final_outcome (the outcome after review, which the score follows); agent_scores.reviewed_findings
#      and overturned_findings
# 1.9: phrase findings checked on the audio: utterances.checks (the phrase, its rivals and their
#      log-probabilities on the audio and on silence), hits.margin and hits.rival
# 1.10: the switch's and the customer's word from the manifest: calls.hangup_by (who released the line:
#      agent | customer | other) and calls.satisfaction (the customer's rating, 1-5); utterances.numbers
#      (the numbers said, each digit's keyed code: comparable within the call after masking); the
#      commitments table (the agent's promised follow-ups, with when they fall due and the limit);
#      calls.crosstalk_db (how loud one side is in the other's channel)
# Files of an older minor version of the same major version are read (and merged into) with the
# columns they lack as nulls; another major version is refused.
PARTITION_COLUMN = "call_date"

_TS = pa.timestamp("us", tz="UTC")

WORD = pa.struct([
    pa.field("word", pa.string()),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
    pa.field("prob", pa.float32()),
])


# A number said (4 digits or more): its character offsets in the text and its digits' keyed code
NUMBER = pa.struct([
    pa.field("start", pa.int32()),
    pa.field("end", pa.int32()),
    pa.field("code", pa.string()),
])

# A phrase checked on an utterance's audio: the phrase, where it is (or would be) in the utterance's key,
# what the transcript has there, the options scored (the phrase first, then its rivals) with, for each,
# how much likelier its character is than the phrase's where they part (nats; the phrase's own 0) on
# the clip and on silence, the decoder prefix and the clip's bounds.
CHECK = pa.struct([
    pa.field("phrase", pa.string()),
    pa.field("key_start", pa.int32()),
    pa.field("key_end", pa.int32()),
    pa.field("heard", pa.string()),
    pa.field("options", pa.list_(pa.string())),
    pa.field("logprobs", pa.list_(pa.float32())),
    pa.field("priors", pa.list_(pa.float32())),
    pa.field("prefix", pa.string()),
    pa.field("clip_start_s", pa.float64()),
    pa.field("clip_end_s", pa.float64()),
])


def _schema(name: str, key: tuple[str, ...], fields: list[pa.Field], replaced_by: str = "call_id",
            whole: bool = False, appended: bool = False) -> pa.Schema:
    """A table's schema with its identity in the metadata (the only place it is declared).

    Args:
        key: the columns that identify a row.
        replaced_by: the column whose values a write replaces: writing a call's rows removes that
            call's earlier rows (``errors``: a file's earlier rows), so a night written twice is
            stored once.
        whole: the table is derived from the whole history and rewritten whole (``agent_scores``).
        appended: the table is a history that is only ever added to, one file per save (``reviews``):
            a night or a rescore never rewrites it, and two savers at once never lose each other's rows.
    """
    return pa.schema(fields, metadata={
        b"callqa.table": name.encode(),
        b"callqa.schema_version": SCHEMA_VERSION.encode(),
        b"callqa.key": ",".join(key).encode(),
        b"callqa.replaced_by": replaced_by.encode(),
        b"callqa.rewrite": b"whole" if whole else b"append" if appended else b"merge",
    })


CALLS = _schema("calls", ("call_id",), [
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("agent_id", pa.string(), nullable=False),
    pa.field("file", pa.string(), nullable=False),
    pa.field("started_at", _TS, nullable=False),
    pa.field("duration_s", pa.float64()),
    pa.field("channels", pa.int8()),
    pa.field("sample_rate", pa.int32()),
    pa.field("codec", pa.string()),
    pa.field("agent_channel", pa.string()),
    pa.field("company", pa.string()),
    pa.field("status", pa.string(), nullable=False),  # ok | unscorable | error
    pa.field("model", pa.string(), nullable=False),  # model id + device/compute type
    pa.field("processed_at", _TS, nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("n_utterances", pa.int32()),
    pa.field("warnings", pa.list_(pa.string())),
    pa.field("agent_language", pa.string()),  # Whisper's language identification, where informative
    pa.field("agent_language_prob", pa.float32()),
    pa.field("agent_zh_prob", pa.float32()),  # p(zh) of the agent's speech, from the model's language head
    pa.field("score", pa.float64()),  # null unless status ok: unscorable and failed calls are never scored
    pa.field("passed", pa.bool_()),
    pa.field("red_line", pa.bool_()),
    pa.field("rubric_version", pa.string()),  # content hash of the rubric that scored the call
    pa.field("lexicon_version", pa.string()),  # content hash of the lexicons that checked it
    pa.field("content_sha256", pa.string()),  # of the recording file
    pa.field("transcription_fingerprint", pa.string()),  # model id + every option that changes a transcript
    pa.field("path", pa.string()),  # absolute path the recording was read from (example clips are cut from it)
    pa.field("error_stage", pa.string()),  # status error: the stage it failed at (decode, transcribe, rules…)
    pa.field("status_reason", pa.string()),  # unscorable or error: why, in words
    pa.field("truncated", pa.bool_()),  # the recording is cut off (decoding stopped early, or short of its header)
    pa.field("roles_method", pa.string()),  # channels | diarised+words | none
    pa.field("roles_confidence", pa.float32()),  # how sure the agent is the agent (1 on stereo)
    pa.field("hangup_by", pa.string()),  # who released the line, from the manifest: agent | customer | other
    pa.field("satisfaction", pa.int8()),  # the customer's rating after the call, 1 (很不满意) to 5 (非常满意)
    pa.field("crosstalk_db", pa.float32()),  # stereo: one side's speech heard in the other channel, in dB (at most)
])

UTTERANCES = _schema("utterances", ("call_id", "utterance_idx"), [
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("utterance_idx", pa.int32(), nullable=False),
    pa.field("speaker", pa.string(), nullable=False),  # agent | customer | other | unknown
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("raw_text", pa.string(), nullable=False),
    pa.field("avg_logprob", pa.float32()),
    pa.field("no_speech_prob", pa.float32()),
    pa.field("words", pa.list_(WORD)),
    pa.field("role_confidence", pa.float32()),  # 1 on stereo; mono: how sure the speaker is right
    pa.field("checks", pa.list_(CHECK)),  # phrases asked about on its audio (pipeline.verify)
    pa.field("numbers", pa.list_(NUMBER)),  # numbers said: where, and their digits' keyed code (service.confirm)
])

VOICE_ACTIVITY = _schema("voice_activity", ("call_id", "speaker", "start_s"), [
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("speaker", pa.string(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
])

SUPPRESSED = _schema("suppressed", ("call_id", "speaker", "start_s"), [
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("speaker", pa.string(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("raw_text", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
])

ERRORS = _schema("errors", ("file",), replaced_by="file", fields=[
    pa.field("file", pa.string(), nullable=False),
    pa.field("call_id", pa.string()),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("error_type", pa.string(), nullable=False),
    pa.field("message", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("occurred_at", _TS, nullable=False),
])

HITS = _schema("hits", ("call_id", "rule_id", "utterance_idx", "start_s"), [
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("rule_id", pa.string(), nullable=False),
    pa.field("speaker", pa.string(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("utterance_idx", pa.int32(), nullable=False),
    pa.field("phrase", pa.string(), nullable=False),  # the lexicon entry
    pa.field("matched_text", pa.string(), nullable=False),  # what was said (as transcribed)
    # exact | sound_alike | near_sound | asr_variant | regex | question | acoustic (dialect); checked on the
    # audio: verified (found and heard) | acoustic (heard where the transcript has a sound-alike) | unsure
    pa.field("match_kind", pa.string(), nullable=False),
    pa.field("category", pa.string()),
    pa.field("severity", pa.string()),
    pa.field("margin", pa.float32()),  # checked on the audio: the phrase's margin over its best rival
    pa.field("rival", pa.string()),  # ... and that rival
])

# A follow-up the agent promised, for supervisors to check against the ticket system (service.commitment_time)
COMMITMENTS = _schema("commitments", ("call_id", "utterance_idx", "at_s"), [
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("agent_id", pa.string(), nullable=False),
    pa.field("rule_id", pa.string(), nullable=False),
    pa.field("utterance_idx", pa.int32(), nullable=False),
    pa.field("at_s", pa.float64(), nullable=False),
    pa.field("until_s", pa.float64(), nullable=False),
    pa.field("promised", pa.string(), nullable=False),  # the clause of the promise (masked, as stored)
    pa.field("phrase", pa.string(), nullable=False),  # the promise phrase (给您回电)
    pa.field("due_words", pa.string()),  # what says when (三个工作日内); null: no time said
    pa.field("due_hours", pa.float64()),  # hours after the call's start; null: no time said; 0: soon
    pa.field("due_at", _TS),  # the call's start + due_hours
    pa.field("matter", pa.string(), nullable=False),  # ordinary | other departments | across provinces
    pa.field("limit_h", pa.float64(), nullable=False),  # 000 一、回复时效: 24 / 48 / 72 h
    pa.field("within_limit", pa.bool_()),  # null: no time said (the rule says review)
    pa.field("customer_said", pa.string()),  # the customer's last words before it (masked): the matter
])

RULE_RESULTS = _schema("rule_results", ("call_id", "rule_id"), [
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("agent_id", pa.string(), nullable=False),
    pa.field("rule_id", pa.string(), nullable=False),
    pa.field("outcome", pa.string(), nullable=False),  # pass | fail | not_applicable | review
    pa.field("hit_count", pa.int32(), nullable=False),
    pa.field("evidence", pa.string(), nullable=False),  # short reason with times
    pa.field("lexicon_version", pa.string(), nullable=False),  # content hash of lexicons/
    pa.field("deduction", pa.float64()),  # points the rubric took off for this rule
    # the span of the call the evidence is about (the first finding, the hold, the unanswered
    # opening...); null when nothing in the call is to be pointed at (e.g. no forbidden phrase said)
    pa.field("at_s", pa.float64()),
    pa.field("until_s", pa.float64()),
    # human review (the reviews table's latest verdict on this finding, when it was made on the outcome
    # the machine gives now): confirmed | overturned | unsure; null when not reviewed
    pa.field("verdict", pa.string()),
    pa.field("final_outcome", pa.string()),  # the outcome after review, which the deduction follows
])

# One row per agent and period; call_date (the partition) is the period's first day. Rewritten whole
# after every run and rescore, from the calls and rule_results tables.
AGENT_SCORES = _schema("agent_scores", ("period_type", "period", "agent_id"), replaced_by="agent_id", whole=True,
                       fields=[
    pa.field("period_type", pa.string(), nullable=False),  # day | week | month
    pa.field("period", pa.string(), nullable=False),  # 2026-11-20 | 2026-W47 | 2026-11
    pa.field("period_start", pa.string(), nullable=False),
    pa.field("agent_id", pa.string(), nullable=False),
    pa.field("calls", pa.int32(), nullable=False),  # scored calls (status ok)
    pa.field("error_calls", pa.int32(), nullable=False),  # recordings that failed: counted apart
    pa.field("unscorable_calls", pa.int32()),  # transcribed, but no whole conversation to score: counted apart
    pa.field("mean_score", pa.float64()),
    pa.field("median_score", pa.float64()),
    pa.field("pass_rate", pa.float64()),
    pa.field("red_lines", pa.int32(), nullable=False),
    pa.field("rule_fail_rates", pa.map_(pa.string(), pa.float64())),  # failed / applicable, per rule
    pa.field("rank", pa.int32()),  # 1 = best mean score among the period's agents
    pa.field("percentile", pa.float64()),  # 100 = best, 0 = worst
    pa.field("mean_score_change", pa.float64()),  # against the agent's previous period of the same kind
    pa.field("pass_rate_change", pa.float64()),
    pa.field("rubric_version", pa.string()),
    pa.field("reviewed_findings", pa.int32()),  # the agent's failed (or to-review) results a reviewer judged
    pa.field("overturned_findings", pa.int32()),  # of those, overturned: they deduct nothing
])

# Human review, one row per action: a reviewer's verdict on a finding, an agent's appeal (or its
# decision), a finding drawn into the review sample. Appended only, one file per save; the latest
# verdict on a (call, rule) counts. call_date (the partition) is the call's date.
REVIEWS = _schema("reviews", ("review_id",), replaced_by="review_id", appended=True, fields=[
    pa.field("review_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),  # verdict | appeal | sample
    pa.field("call_id", pa.string(), nullable=False),
    pa.field("rule_id", pa.string(), nullable=False),
    pa.field("agent_id", pa.string()),  # the call's agent
    pa.field("machine_outcome", pa.string()),  # the rule's outcome when the row was written
    pa.field("finding", pa.string()),  # the rule result's evidence then: what was reviewed
    pa.field("at_s", pa.float64()),  # where in the call the finding is
    pa.field("lexicon_version", pa.string()),  # the lexicons that made the finding
    pa.field("verdict", pa.string()),  # verdict: confirmed | overturned | unsure
    pa.field("reviewer", pa.string()),  # verdict, appeal decision, sample: who
    pa.field("recorded_at", _TS, nullable=False),
    pa.field("comment", pa.string()),
    pa.field("appeal_agent", pa.string()),  # appeal: the agent who appealed
    pa.field("appeal_reason", pa.string()),
    pa.field("appeal_status", pa.string()),  # appeal: open | upheld | rejected
    pa.field("sample_week", pa.string()),  # sample: the ISO week drawn from (2026-W47)
    pa.field("sample_size", pa.int32()),  # sample: findings of this rule and outcome that week (the stratum)
])

TABLES: dict[str, pa.Schema] = {
    "calls": CALLS,
    "utterances": UTTERANCES,
    "voice_activity": VOICE_ACTIVITY,
    "suppressed": SUPPRESSED,
    "errors": ERRORS,
    "hits": HITS,
    "rule_results": RULE_RESULTS,
    "commitments": COMMITMENTS,
    "agent_scores": AGENT_SCORES,
    "reviews": REVIEWS,
}


def table_key(table: str) -> list[str]:
    """The columns that identify a row of ``table``."""
    return TABLES[table].metadata[b"callqa.key"].decode().split(",")


def replaced_by(table: str) -> str:
    """The column whose values a write of ``table`` replaces (``call_id``; ``file`` for errors)."""
    return TABLES[table].metadata[b"callqa.replaced_by"].decode()


def appended(table: str) -> bool:
    """Whether ``table`` is only ever added to, one file per save (``reviews``)."""
    return TABLES[table].metadata[b"callqa.rewrite"] == b"append"


def rewritten_whole(table: str) -> bool:
    """Whether ``table`` is derived from the whole history and rewritten whole (``agent_scores``)."""
    return TABLES[table].metadata[b"callqa.rewrite"] == b"whole"
