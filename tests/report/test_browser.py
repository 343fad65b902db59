"""The report in a real browser: headless Chromium renders the page of a tiny pde run once per
session (DOM and net log in one launch, a screenshot in another); the DOM names every stage and
every gate decision, the screenshot shows the figures, and the page asks the network for nothing.

Chromium is Debian's `chromium` package (`.ci/run` installs it); without it these tests skip.
"""

from __future__ import annotations

import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from stagedsl.report.draw import VAL_COLOR
from .conftest import assert_not_blank, pixels_near, require_chromium, summary

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
URL = re.compile(r"""(?:https?|wss?|ftp)://""", re.I)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser; requested first, so that without one nothing is run for nothing."""
    return require_chromium()


def _chromium(page: Path, work: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    command = [require_chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def page_requests(net_log: Path) -> list[str]:
    """URLs the page itself asked for, from Chromium's --log-net-log: requests started from the page's
    (file://, opaque "null") origin. The browser's own background requests have no origin."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event.get("type") != start_job or "url" not in params:
            continue
        if params.get("initiator") == "null" or str(params.get("network_isolation_key", "")).startswith("file://"):
            urls.append(params["url"])
    return urls


@pytest.fixture(scope="module")
def rendered(chromium, gated_report, tmp_path_factory) -> dict:
    """The page rendered by Chromium once: the DOM it built, its net log, a 1280x2000 screenshot."""
    work = tmp_path_factory.mktemp("chromium")
    page = gated_report / "index.html"
    net_log = work / "net-log.json"
    dom = _chromium(page, work, f"--log-net-log={net_log}", "--dump-dom").stdout
    shot = work / "screenshot.png"
    _chromium(page, work, "--window-size=1280,2000", f"--screenshot={shot}")
    return {"page": page, "dom": dom, "net_log": net_log, "screenshot": shot}


class _Rows(HTMLParser):
    """The text of every table row inside one <section id=...>."""

    def __init__(self, section: str):
        super().__init__()
        self.section, self.depth, self.rows, self.row = section, 0, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.depth = self.depth + 1 if self.depth else (1 if dict(attrs).get("id") == self.section else 0)
        elif tag == "tr" and self.depth:
            self.row = []

    def handle_endtag(self, tag):
        if tag == "section" and self.depth:
            self.depth -= 1
        elif tag == "tr" and self.row is not None:
            self.rows.append(" ".join(" ".join(self.row).split()))
            self.row = None

    def handle_data(self, data):
        if self.row is not None:
            self.row.append(data)


def rows_of(dom: str, section: str) -> list[str]:
    parser = _Rows(section)
    parser.feed(dom)
    return parser.rows


def test_the_dom_names_every_stage_with_its_status(rendered, gated_run):
    records = summary(gated_run)["stages"]
    rows = rows_of(rendered["dom"], "stages")[1:]
    assert len(rows) == len(records) == 3
    for row, (name, record) in zip(rows, records.items()):
        assert name in row and record["status"].replace("_", " ") in row, row
    assert "2 (1 retry)" in rows[2]  # finetune ran twice: its gate retried it


def test_the_dom_names_every_gate_decision(rendered, gated_run):
    decisions = summary(gated_run)["gate_decisions"]
    assert [d["passed"] for d in decisions] == [True, False, False, False]
    rows = rows_of(rendered["dom"], "gates")[1:]
    assert len(rows) == len(decisions)
    for row, decision in zip(rows, decisions):
        (metric, seen), = decision["values"].items()
        assert decision["stage"] in row and decision["condition"] in row, row
        assert f"{metric} = {seen:.4g}" in row, row
        assert ("✓ passed" if decision["passed"] else "✗ failed") in row and decision["action"] in row, row
    assert "stopped by gate" in rendered["dom"]


def test_the_screenshot_shows_the_page_and_its_figures(rendered):
    shot = rendered["screenshot"]
    assert_not_blank(shot, min_size=(1280, 2000))
    # the validation curves are orange: only the figures have that colour, so the PNGs were loaded and drawn
    assert pixels_near(shot, VAL_COLOR) > 200


def test_the_page_makes_no_network_request(rendered, gated_report):
    html_text = rendered["page"].read_text()
    assert not URL.findall(html_text), URL.findall(html_text)
    assert not URL.findall(rendered["dom"])
    assert "<script" not in html_text and "<script" not in rendered["dom"]
    for src in re.findall(r'<img[^>]+src="([^"]+)"', rendered["dom"]):
        assert not Path(src).is_absolute() and (gated_report / src).is_file(), src
    assert page_requests(rendered["net_log"]) == []


def test_the_net_log_check_sees_a_page_request(chromium, tmp_path):
    """The check above can fail: a page with one remote image shows up in the net log."""
    page = tmp_path / "remote.html"
    page.write_text('<!DOCTYPE html><html><body><img src="https://stagedsl-report-test.invalid/x.png"></body></html>')
    net_log = tmp_path / "net-log.json"
    _chromium(page, tmp_path, f"--log-net-log={net_log}", "--dump-dom")
    assert page_requests(net_log) == ["https://stagedsl-report-test.invalid/x.png"]
