"""The report and comparison pages as a person sees them: rendered by headless Chromium.

Playwright drives the system's Chromium (Debian's `chromium` package, which `make test` and
`.ci/run` install when it is missing; Playwright never downloads a browser here). Each page
must render without a console error or an uncaught exception, every figure must be decoded
and drawn at a readable size, and a full-page screenshot is kept in the test's tmp folder
(`pytest --basetemp DIR` keeps it where you want it) for a person to look at.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from sim.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MIN_NATURAL = (600, 250)  # px of the PNG itself: a figure 10 inches wide at 96 dpi is 960
MIN_SHOWN_WIDTH = 600  # px on the page at a 1280 px wide window
SIM_FIGURES = [
    "Throughput over time, by endpoint",
    "Error rate over time",
    "Latency percentiles over time (all requests)",
    "Latency percentiles over time, by endpoint",
    "Latency distribution by endpoint (CDF)",
    "Tasks by state over time",
    "Command dispatch latency, by command",
    "Queue wait over time (simulated server)",
]


@pytest.fixture(scope="module")
def browser() -> Any:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium with apt-get where it can")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def open_page(browser: Any, page_file: Path, screenshot: Path) -> dict[str, Any]:
    """Load a page file; its console errors, page errors and every image's sizes; a screenshot."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
    page.goto(page_file.as_uri(), wait_until="load")
    images = page.eval_on_selector_all(
        "img",
        """els => els.map(i => ({alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth,
                                naturalHeight: i.naturalHeight, width: i.getBoundingClientRect().width,
                                height: i.getBoundingClientRect().height}))""",
    )
    title = page.title()
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return {"problems": problems, "images": images, "title": title}


def check_figures(images: list[dict[str, Any]], expected: list[str]) -> None:
    assert [i["alt"] for i in images] == expected
    for image in images:
        assert image["complete"], f"{image['alt']}: not loaded"
        assert image["naturalWidth"] >= MIN_NATURAL[0] and image["naturalHeight"] >= MIN_NATURAL[1], image
        assert image["width"] >= MIN_SHOWN_WIDTH, f"{image['alt']}: shown {image['width']:.0f} px wide"
        # Drawn with its own proportions (not squashed by the page's CSS).
        ratio = image["naturalWidth"] / image["naturalHeight"]
        assert abs(image["width"] / image["height"] - ratio) < 0.02 * ratio, image


def test_report_and_comparison_pages_render_in_chromium(
    browser: Any, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.html"
    assert main(["report", str(runs["errors"]), "--out", str(report)]) == 0
    shown = open_page(browser, report, tmp_path / "report.png")
    assert shown["problems"] == [] and shown["title"].startswith("Run report:")
    check_figures(shown["images"], SIM_FIGURES)

    compare = tmp_path / "compare.html"
    assert main(["compare", str(runs["sim"]), str(runs["errors"]), "--out", str(compare)]) == 0
    capsys.readouterr()
    shown = open_page(browser, compare, tmp_path / "compare.png")
    assert shown["problems"] == [] and shown["title"].startswith("Comparison:")
    check_figures(
        shown["images"],
        [
            "Throughput over time: A vs B (all requests)",
            "Latency percentiles over time: A vs B (all requests)",
            "Latency distribution by endpoint: A vs B (CDF)",
        ],
    )
    for name in ("report.png", "compare.png"):
        assert (tmp_path / name).stat().st_size > 50_000  # a page with its figures, not a blank one


def test_the_checks_catch_a_broken_page(browser: Any, tmp_path: Path) -> None:
    # The same checks on a page with a console error and an image that does not decode must fail.
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img alt="x" src="data:image/png;base64,AAAA"><script>console.error("boom")</script>')
    shown = open_page(browser, bad, tmp_path / "bad.png")
    assert shown["problems"] == ["console error: boom"]
    with pytest.raises(AssertionError):
        check_figures(shown["images"], ["x"])
