"""The review page's findings request with many verdicts saved (issue 29: 3.5 s with 1,000 before).

    python benchmarks/review_volume.py [--verdicts 10000]

Scores the demo's scripts through the import engine (no model), saves N verdicts as the review page
does (one reviews file per save; written directly, without the fsync a real save makes, so that
setting up 10,000 takes seconds), then times `GET /api/findings` on the review server: the first
request (every file read) and the next ones (only files saved since), and one after 10 more saves.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verdicts", type=int, default=10_000)
    args = parser.parse_args(argv)
    os.environ["CALLQA_ASR_ENGINE"] = "import"
    import pyarrow.parquet as pq
    from starlette.testclient import TestClient

    from conftest import truth_transcripts
    from pipeline.config import load_config
    from pipeline.night import run_night
    from pipeline.review import reviews
    from pipeline.review.server import ReviewApp
    from pipeline.storage import parquet
    from pipeline.storage.parquet import split_by_date

    base = Path(tempfile.mkdtemp(prefix="callqa-review-volume-"))
    out = base / "out"
    run_night(truth_transcripts(base / "in"), out, load_config())
    fails = reviews.review_queue(out)
    fails = fails[fails["outcome"] == "fail"]
    first = reviews.record_verdict(out, fails.iloc[0]["call_id"], fails.iloc[0]["rule_id"], "confirmed", "bench")

    def save(count: int) -> None:
        for k in range(count):
            row = {**first, "review_id": uuid.uuid4().hex, "verdict": ("confirmed", "overturned", "unsure")[k % 3]}
            for date, data in split_by_date("reviews", [row]).items():
                folder = out / "reviews" / f"call_date={date}"
                pq.write_table(data, folder / f"bench-{uuid.uuid4().hex}.parquet")

    clock = time.perf_counter()
    save(args.verdicts - 2)
    print(f"{args.verdicts - 1} verdicts written in {time.perf_counter() - clock:.1f} s ({len(fails)} findings)")
    client = TestClient(ReviewApp(out))
    clock = time.perf_counter()
    client.get("/api/findings")
    print(f"/api/findings, first request over {args.verdicts - 1} files: {time.perf_counter() - clock:.3f} s")
    clock = time.perf_counter()
    reviews.record_verdict(out, fails.iloc[1]["call_id"], fails.iloc[1]["rule_id"], "overturned", "bench")
    files = len(list((out / "reviews").rglob("*.parquet")))
    print(f"one more save, through the review page's code (it compacts): {time.perf_counter() - clock:.1f} s, "
          f"{files} file(s) left")
    parquet._appended.clear()  # a new server process: nothing read yet
    for label in ("first request after it", "second", "third"):
        clock = time.perf_counter()
        response = client.get("/api/findings")
        assert response.status_code == 200
        print(f"/api/findings, {label}: {time.perf_counter() - clock:.3f} s")
    save(10)
    clock = time.perf_counter()
    client.get("/api/findings")
    print(f"/api/findings after 10 more saves: {time.perf_counter() - clock:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
