"""The review page: a small local web app over an output folder (``callqa review --results OUT_DIR``).

A reviewer lists the findings to review (filtered by rule, agent, date, outcome, review state, the
sample), opens one, hears the clip that starts at it, reads the transcript with the finding marked,
and confirms, overturns or marks it unsure (keys ``c`` / ``o`` / ``u``); agents' appeals are listed
and decided on their own view. Every save is a row in the ``reviews`` table
(:mod:`pipeline.review.reviews`); scores follow at the next ``callqa rescore`` or night.

It is a Starlette app (Starlette and uvicorn come with Prefect), bound to 127.0.0.1 unless told
otherwise. It serves only what the results say: audio is cut from a stored call's recording, found by
call id, and only when the recording lies inside the recordings folder or the results folder (links
resolved first); a request whose path has a ``..`` segment is refused outright.
"""

from __future__ import annotations

import json
import logging
import math
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import PipelineError, ResultsNotFoundError, ReviewError
from ..storage.parquet import read_arrow
from ..text import on_disk
from ..transcribe.audio import TARGET_RATE, decode_audio
from . import precision, reviews
from .examples import wav_bytes

logger = logging.getLogger("callqa.review")

PAGE = Path(__file__).with_name("review_page.html")
MAX_CLIP_S = 120.0  # the longest clip one request cuts


MAX_BODY = 64 * 1024  # bytes of a verdict, an appeal or a decision: a comment of 2,000 characters fits


def _plain(value):
    """A JSON-ready cell: NaN and NaT become null, timestamps ISO text, numpy numbers Python ones."""
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return None if value != value else value.isoformat()
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value


def _records(frame) -> list[dict]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


class ReviewApp:
    """The state of one review server: the results folder and the folders audio may be read from.

    Args:
        results: the output folder of ``callqa run``.
        recordings: where the recordings are (default: the folders the stored calls were read
            from); audio is served only from inside these folders or the results folder.
    """

    def __init__(self, results: str | Path, recordings: str | Path | None = None):
        self.results = Path(results).resolve()
        if not (self.results / "calls").is_dir():
            raise ResultsNotFoundError(f"{results} holds no callqa output (no calls table): give the OUT_DIR "
                                       "of an earlier `callqa run`")
        self.recordings = Path(recordings).resolve() if recordings else None
        self.app = Starlette(routes=[
            Route("/", self.page),
            Route("/api/findings", self.findings),
            Route("/api/call", self.call),
            Route("/api/appeals", self.appeals),
            Route("/api/precision", self.precision),
            Route("/api/verdict", self.verdict, methods=["POST"]),
            Route("/api/appeal", self.appeal, methods=["POST"]),
            Route("/api/appeal/decide", self.decide, methods=["POST"]),
            Route("/clip", self.clip),
        ])

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            raw = unquote(scope.get("raw_path", b"").decode("latin-1") or scope.get("path", ""))
            if ".." in raw.replace("\\", "/").split("/") or ".." in scope.get("path", "").split("/"):
                await JSONResponse({"error": "a path with '..' is refused"}, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    # -- pages and data ------------------------------------------------------------------------

    def page(self, request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    def findings(self, request: Request) -> JSONResponse:
        queue = reviews.review_queue(self.results)
        q = request.query_params
        options = {"rules": sorted(queue["rule_id"].unique().tolist()),
                   "agents": sorted(queue["agent_id"].unique().tolist()),
                   "dates": sorted(queue["call_date"].unique().tolist())}
        if q.get("rule"):
            queue = queue[queue["rule_id"] == q["rule"]]
        if q.get("agent"):
            queue = queue[queue["agent_id"] == q["agent"]]
        if q.get("from"):
            queue = queue[queue["call_date"] >= q["from"]]
        if q.get("to"):
            queue = queue[queue["call_date"] <= q["to"]]
        if q.get("outcome"):
            queue = queue[queue["outcome"] == q["outcome"]]
        state = q.get("state")
        if state == "unreviewed":
            queue = queue[queue["verdict"].isna()]
        elif state == "stale":
            queue = queue[queue["stale_verdict"]]
        elif state:
            queue = queue[queue["verdict"] == state]
        if q.get("sampled") in ("1", "true"):
            queue = queue[queue["sampled"]]
        return JSONResponse({"findings": _records(queue), **options})

    def call(self, request: Request) -> JSONResponse:
        call_id = request.query_params.get("call", "")
        calls = read_arrow(self.results, "calls", ["call_id", "agent_id", "file", "started_at", "duration_s",
                                                   "status", "score", "passed", "roles_method"]).to_pandas()
        row = calls[calls["call_id"] == call_id]
        if row.empty:
            return JSONResponse({"error": f"no call {call_id!r} in these results"}, status_code=404)
        call = _records(row)[0]
        date = call["call_date"]
        queue = reviews.review_queue(self.results)
        findings = queue[queue["call_id"] == call_id]
        utterances = read_arrow(self.results, "utterances", ["call_id", "utterance_idx", "speaker", "start_s", "end_s",
                                                            "text", "role_confidence"], dates=(date, date)).to_pandas()
        utterances = utterances[utterances["call_id"] == call_id].sort_values("start_s")
        hits = read_arrow(self.results, "hits", ["call_id", "rule_id", "utterance_idx", "start_s", "end_s", "phrase",
                                                 "matched_text"], dates=(date, date)).to_pandas()
        hits = hits[hits["call_id"] == call_id]
        return JSONResponse({"call": call, "findings": _records(findings), "utterances": _records(utterances),
                             "hits": _records(hits)})

    def appeals(self, request: Request) -> JSONResponse:
        return JSONResponse({"appeals": _records(reviews.appeals(self.results))})

    def precision(self, request: Request) -> JSONResponse:
        try:
            threshold = float(request.query_params.get("threshold", 0.8))
        except ValueError:
            threshold = math.nan
        if not 0 <= threshold <= 1:  # NaN too
            return JSONResponse({"error": f"threshold must be a precision between 0 and 1, not "
                                          f"{request.query_params.get('threshold')!r}"}, status_code=400)
        table = precision.rule_precision(self.results, threshold)
        return JSONResponse({"rules": _records(table), "overall": _plain_dict(precision.overall_agreement(self.results)),
                             "threshold": threshold})

    # -- saving ----------------------------------------------------------------------------------

    async def _save(self, request: Request, action) -> JSONResponse:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return JSONResponse({"error": f"the request body is {len(raw)} bytes; {MAX_BODY} at most"}, status_code=413)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than a verdict ever is
            return JSONResponse({"error": "the request body is not JSON (or nested too deeply)"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the request body must be a JSON object"}, status_code=400)
        try:
            saved = await run_in_threadpool(action, body)
        except ReviewError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404 if "no call" in str(exc) else 400)
        except PipelineError as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)
        return JSONResponse({"saved": [{k: _plain(v) for k, v in row.items()} for row in saved]})

    async def verdict(self, request: Request) -> JSONResponse:
        return await self._save(request, lambda b: [reviews.record_verdict(
            self.results, str(b.get("call_id", "")), str(b.get("rule_id", "")), str(b.get("verdict", "")),
            str(b.get("reviewer") or ""), b.get("comment"))])

    async def appeal(self, request: Request) -> JSONResponse:
        return await self._save(request, lambda b: [reviews.record_appeal(
            self.results, str(b.get("call_id", "")), str(b.get("rule_id", "")), str(b.get("agent") or ""),
            str(b.get("reason") or ""))])

    async def decide(self, request: Request) -> JSONResponse:
        def action(b):
            if b.get("decision") not in ("upheld", "rejected"):
                raise ReviewError("decision must be 'upheld' or 'rejected'")
            return reviews.decide_appeal(self.results, str(b.get("call_id", "")), str(b.get("rule_id", "")),
                                         b["decision"] == "upheld", str(b.get("reviewer") or ""), b.get("comment"))
        return await self._save(request, action)

    # -- audio -----------------------------------------------------------------------------------

    def recording_path(self, call_id: str) -> Path:
        """Where a stored call's recording is, inside the allowed folders.

        Raises:
            ReviewError: no such call, no recording path stored, or a path outside the allowed folders.
        """
        calls = read_arrow(self.results, "calls", ["call_id", "file", "path"]).to_pandas()
        row = calls[calls["call_id"] == call_id]
        if row.empty:
            raise ReviewError(f"no call {call_id!r} in these results")
        stored = row.iloc[0]["path"]
        if self.recordings is not None:
            candidate = self.recordings / row.iloc[0]["file"]
            roots = [self.recordings, self.results]
        elif stored:
            candidate = on_disk(stored)  # a GBK name is stored as it reads
            roots = [self.results] + sorted({Path(p).resolve().parent for p in calls["path"].dropna()})
        else:
            raise ReviewError(f"the results do not say where {call_id}'s recording is: give --recordings")
        resolved = candidate.resolve()
        if not _inside(resolved, roots):
            raise ReviewError(f"{call_id}'s recording {resolved} is outside the recordings and results folders")
        return resolved

    def clip(self, request: Request) -> Response:
        q = request.query_params
        try:
            start = max(0.0, float(q.get("start", 0)))
            end = float(q.get("end", start + 30))
        except ValueError:
            return JSONResponse({"error": "start and end are seconds"}, status_code=400)
        if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
            return JSONResponse({"error": "need start < end"}, status_code=400)
        end = min(end, start + MAX_CLIP_S)
        try:
            path = self.recording_path(q.get("call", ""))
        except ReviewError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404 if "no call" in str(exc) else 403)
        if not path.is_file():
            return JSONResponse({"error": f"recording not found: {path}"}, status_code=404)
        try:
            body = _clip_wav(str(path), path.stat().st_mtime_ns, round(start, 2), round(end, 2))
        except PipelineError as exc:
            return JSONResponse({"error": f"cannot decode {path.name}: {exc}"}, status_code=422)
        return Response(body, media_type="audio/wav", headers={"Cache-Control": "no-store"})


def _plain_dict(values: dict) -> dict:
    return {k: _plain(v) for k, v in values.items()}


@lru_cache(maxsize=4)
def _decoded(path: str, mtime_ns: int):
    return decode_audio(path)


@lru_cache(maxsize=64)
def _clip_wav(path: str, mtime_ns: int, start: float, end: float) -> bytes:
    audio = _decoded(path, mtime_ns)
    return wav_bytes(audio.channels_data[:, int(start * TARGET_RATE):int(min(end, audio.duration_s) * TARGET_RATE)])


def serve(results: str | Path, recordings: str | Path | None = None, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the review page until stopped (Ctrl-C).

    Raises:
        ResultsNotFoundError: ``results`` holds no callqa output.
    """
    import uvicorn

    app = ReviewApp(results, recordings)
    uvicorn.run(app, host=host, port=port, log_level="warning")
