"""Make the README's screenshots with the project's own tools: the executed QA notebook and a training page.

Usage (after `make demo`, with Chromium and a CJK font installed, and `pip install -e ".[docs]"`):
    python docs/make_screenshots.py [--results out/demo]

Writes docs/notebook_overview.png (the top of qa_overview.ipynb, executed on the results),
docs/notebook_drilldown.png (its one-call drill-down: timeline, findings, transcript),
docs/examples_page.png (the page of `callqa examples --rule forbidden.phrase --worst 2`) and
docs/review_page.png (the review page of `callqa review`, on a copy of the results with a review
sample drawn and two verdicts saved, a forbidden phrase open with its clip played). `--only NAME`
makes one of them (notebooks, examples, review).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=5000"]


def screenshot(chromium: str, page: Path, target: Path, width: int, height: int, work: Path) -> None:
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={work / 'profile'}",
                    f"--window-size={width},{height}", f"--screenshot={target}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    shrink(target)


def shrink(target: Path) -> None:
    """Quantise a screenshot to 128 colours, so it stays small in git."""
    from PIL import Image  # comes with matplotlib

    image = Image.open(target).convert("RGB")
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)  # small in git
    print(f"{target.relative_to(ROOT)}: {image.size[0]}x{image.size[1]}, {target.stat().st_size // 1024} KiB")


def notebook_html(notebook, path: Path) -> None:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
    exporter.exclude_input = True  # what a QA manager looks at: the results, not the code
    body, _ = exporter.from_notebook_node(notebook)
    path.write_text(body, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "out" / "demo")
    parser.add_argument("--only", choices=("notebooks", "examples", "review"), default=None)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium is needed (Debian: apt-get install chromium)")
    work = Path(tempfile.mkdtemp(prefix="callqa-shots-"))
    if args.only in (None, "notebooks"):
        notebooks(chromium, args.results, work)
    if args.only in (None, "examples"):
        from pipeline.review.examples import export_examples, pick_examples
        from pipeline.review.explore import load_results

        results = load_results(args.results)
        page = export_examples(results, pick_examples(results, "forbidden.phrase", "worst", 2), work / "examples")
        screenshot(chromium, page, ROOT / "docs" / "examples_page.png", 1000, 1250, work)
    if args.only in (None, "review"):
        review_page(args.results, work)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def notebooks(chromium: str, results: Path, work: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    os.environ["CALLQA_RESULTS"] = str(results.resolve())
    notebook = nbformat.read(ROOT / "notebooks" / "qa_overview.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    notebook_html(notebook, work / "overview.html")
    screenshot(chromium, work / "overview.html", ROOT / "docs" / "notebook_overview.png", 1100, 1500, work)
    drill = copy.deepcopy(notebook)
    start = next(i for i, c in enumerate(drill.cells) if c.cell_type == "markdown" and "单通话详情" in c.source)
    drill.cells = drill.cells[start:]
    notebook_html(drill, work / "drilldown.html")
    screenshot(chromium, work / "drilldown.html", ROOT / "docs" / "notebook_drilldown.png", 1100, 1300, work)


def review_page(results: Path, work: Path) -> None:
    """The review page as a reviewer sees it: a sample drawn, two verdicts saved, a finding open."""
    from pipeline.review import reviews
    from pipeline.review.server import ReviewApp
    from tests.browser import serving

    out = work / "reviewed"
    shutil.copytree(results, out)
    sample = reviews.draw_sample(out, per_rule=2, seed=47)
    fails = sample[sample["machine_outcome"] == "fail"].sort_values(["rule_id", "call_id"])
    forbidden = fails[fails["rule_id"] == "forbidden.phrase"]
    others = fails[fails["rule_id"] != "forbidden.phrase"]
    if len(others):
        first = others.iloc[0]
        reviews.record_verdict(out, first["call_id"], first["rule_id"], "confirmed", "王质检")
    if len(forbidden) > 1:
        second = forbidden.iloc[1]
        reviews.record_verdict(out, second["call_id"], second["rule_id"], "overturned", "王质检", "客户说的，不是坐席")
    with serving(ReviewApp(out)) as url:
        review_screenshot(url, forbidden.iloc[0]["call_id"], work)


def review_screenshot(url: str, call_id: str, work: Path) -> None:
    """Open the forbidden phrase of ``call_id``, play two seconds of its clip, take the picture."""
    from tests.browser import Browser

    browser = Browser(work / "review-profile")
    try:
        page = browser.open(url + "/", 1400, 900)
        page.wait_for("document.body.dataset.ready === '1'")
        page.type("#reviewer", "王质检")
        index = page.evaluate("[...document.querySelectorAll('tr.finding')].findIndex(tr => tr.dataset.call === "
                              f"{call_id!r} && tr.dataset.rule === 'forbidden.phrase')")
        page.click(f'tr.finding[data-i="{index}"]')
        page.wait_for("document.querySelector('#player').dataset.state === 'ok'")
        page.click("#d-title")
        page.press("p")
        page.wait_for("document.querySelector('#player').currentTime > 2")
        page.press("p")
        target_png = ROOT / "docs" / "review_page.png"
        page.screenshot(target_png)
    finally:
        browser.close()
    shrink(target_png)


if __name__ == "__main__":
    sys.exit(main())
