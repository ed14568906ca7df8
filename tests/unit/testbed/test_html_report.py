"""report.html as a browser shows it: headless Chromium renders every section and plot, offline,
with no console error, and a device id carrying markup stays text."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from testbed import cli
from testbed.operate.doctor import find_chromium
from testbed.runs.html_report import PLOTS, write_html
from testbed.runs.report import write_report
from tests.unit.testbed.test_report import outcome

SECTIONS = ("checks", "figures", "plots", "quarantine", "faults", "alerts", "unexplained", "cost")
HOSTILE_ID = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


def chromium() -> str:
    found = find_chromium()
    if found:
        return found
    pytest.fail("no Chromium to render the report with: apt-get install chromium (macOS: brew install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs the tests as root, where Chromium's sandbox refuses to start
        launched = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


def open_offline(browser: Browser, path: Path) -> tuple[Page, list[str]]:
    """The page, and every console error, page error and request to anything but the file itself."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: problems.append(f"request: {r.url}") if r.url != path.as_uri() else None)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems


def rendered_images(page: Page) -> list[dict[str, Any]]:
    return list(page.eval_on_selector_all("img", "els => els.map(e => ({alt: e.alt, w: e.naturalWidth}))"))


def test_the_report_renders_every_section_and_plot_offline(browser: Browser, tmp_path: Path) -> None:
    report = write_report(tmp_path, outcome(lost=True))
    page, problems = open_offline(browser, tmp_path / "report.html")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert problems == []
    assert page.title() == f"smoke FAILED: load run {report['run_id']}"
    assert page.inner_text("h1") == "smoke: FAILED"
    assert [page.locator(f"h2#{s}").count() for s in SECTIONS] == [1] * len(SECTIONS)
    images = rendered_images(page)
    assert [i["alt"] for i in images] == ["Throughput", "Latency: histogram and CDF", "Lag", "Latency per hop"]
    assert all(i["w"] > 0 for i in images), images
    failed = page.locator("td.bad").all_inner_texts()
    assert failed == ["FAILED"]
    assert "unaccounted (lost): a:3" in page.inner_text("#unexplained + ul")
    assert "iot.messages" in page.inner_text("#cost ~ table") and "saves" in page.inner_text("#cost ~ ul")
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_markup_in_a_device_id_is_shown_as_text(browser: Browser, tmp_path: Path) -> None:
    report = write_report(tmp_path, outcome(lost=True))
    report["reconciliation"]["lost_ids"] = [f"{HOSTILE_ID}:7"]
    report["reconciliation"]["quarantined_by_reason"] = {HOSTILE_ID: 1}
    write_html(tmp_path, report)
    page, problems = open_offline(browser, tmp_path / "report.html")
    assert page.evaluate("window.pwned === undefined"), "markup from the run was executed"
    assert problems == []
    assert f"unaccounted (lost): {HOSTILE_ID}:7" in page.inner_text("#unexplained + ul")
    assert len(rendered_images(page)) == len(PLOTS), "no image was injected"


def test_compare_writes_two_runs_side_by_side(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_report(first, outcome())
    report = json.loads((first / "report.json").read_text())
    write_report(second, dataclasses.replace(outcome(lost=True), run_id="r2"))
    out = tmp_path / "compare.html"
    assert cli.main(["compare", str(first), str(second / "report.json"), "--html", str(out)]) == 0
    page, problems = open_offline(browser, out)
    assert problems == []
    assert page.title() == f"smoke {report['run_id']} vs smoke r2"
    assert page.locator(".runs > section.run").all_inner_texts()[0].startswith("smoke: PASSED")
    assert page.locator(".runs > section.run h1").all_inner_texts() == ["smoke: PASSED", "smoke: FAILED"]
    left, right = (page.locator(f"#run-{run_id}").bounding_box() for run_id in (report["run_id"], "r2"))
    assert left is not None and right is not None
    assert left["y"] == right["y"] and left["x"] < right["x"], "side by side"
    assert len(rendered_images(page)) == 2 * len(PLOTS)
