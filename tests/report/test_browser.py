"""The report in a real browser: headless Chromium renders the pages of a tiny pde run, a tiny
matrix run and a tiny search once each (DOM and net log in one launch, a screenshot in another);
the DOM names every stage and every gate decision (of every member), every member and ensemble
and every trial with the best marked, the screenshots show the figures, and no page asks the
network for anything.

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
from .composed import matrix_report, matrix_run, search_report, search_run  # noqa: F401  (fixtures)
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


def render(folder: Path, work: Path) -> dict:
    """The page in `folder` rendered by Chromium: the DOM it built, its net log, a 1280x2000 screenshot."""
    page = folder / "index.html"
    net_log = work / "net-log.json"
    dom = _chromium(page, work, f"--log-net-log={net_log}", "--dump-dom").stdout
    shot = work / "screenshot.png"
    _chromium(page, work, "--window-size=1280,2000", f"--screenshot={shot}")
    return {"page": page, "folder": folder, "dom": dom, "net_log": net_log, "screenshot": shot}


@pytest.fixture(scope="module")
def rendered(chromium, gated_report, tmp_path_factory) -> dict:
    """The single run's page, rendered once."""
    return render(gated_report, tmp_path_factory.mktemp("chromium"))


@pytest.fixture(scope="module")
def rendered_matrix(chromium, matrix_report, tmp_path_factory) -> dict:
    """The matrix run's page, rendered once."""
    return render(matrix_report, tmp_path_factory.mktemp("chromium-matrix"))


@pytest.fixture(scope="module")
def rendered_search(chromium, search_report, tmp_path_factory) -> dict:
    """The search's page, rendered once."""
    return render(search_report, tmp_path_factory.mktemp("chromium-search"))


class _Rows(HTMLParser):
    """The cells' text of every table row inside one <section id=...>."""

    def __init__(self, section: str):
        super().__init__()
        self.section, self.depth, self.rows, self.row = section, 0, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.depth = self.depth + 1 if self.depth else (1 if dict(attrs).get("id") == self.section else 0)
        elif tag == "tr" and self.depth:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.row.append("")

    def handle_endtag(self, tag):
        if tag == "section" and self.depth:
            self.depth -= 1
        elif tag == "tr" and self.row is not None:
            self.rows.append([" ".join(cell.split()) for cell in self.row])
            self.row = None

    def handle_data(self, data):
        if self.row:
            self.row[-1] += data


def cells_of(dom: str, section: str) -> list[list[str]]:
    """Every row of the tables in the section, as its cells' text."""
    parser = _Rows(section)
    parser.feed(dom)
    return parser.rows


def rows_of(dom: str, section: str) -> list[str]:
    """Every row of the tables in the section, as one line of text."""
    return [" ".join(cells) for cells in cells_of(dom, section)]


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


def assert_offline(rendered: dict) -> None:
    """No URL in the page or its DOM, no script, every image a file beside the page, no request in the net log."""
    html_text = rendered["page"].read_text()
    assert not URL.findall(html_text), URL.findall(html_text)
    assert not URL.findall(rendered["dom"])
    assert "<script" not in html_text and "<script" not in rendered["dom"]
    images = re.findall(r'<img[^>]+src="([^"]+)"', rendered["dom"])
    assert images
    for src in images:
        assert not Path(src).is_absolute() and (rendered["folder"] / src).is_file(), src
    assert page_requests(rendered["net_log"]) == []


def test_the_page_makes_no_network_request(rendered):
    assert_offline(rendered)


def test_the_net_log_check_sees_a_page_request(chromium, tmp_path):
    """The check above can fail: a page with one remote image shows up in the net log."""
    page = tmp_path / "remote.html"
    page.write_text('<!DOCTYPE html><html><body><img src="https://stagedsl-report-test.invalid/x.png"></body></html>')
    net_log = tmp_path / "net-log.json"
    _chromium(page, tmp_path, f"--log-net-log={net_log}", "--dump-dom")
    assert page_requests(net_log) == ["https://stagedsl-report-test.invalid/x.png"]


def pngs(folder: Path) -> list[Path]:
    """Every figure written beside the page (members' and trials' in their subfolders)."""
    return sorted(folder.rglob("*.png"))


def test_the_matrix_dom_names_every_member_and_ensemble_and_marks_the_best(rendered_matrix, matrix_run):
    results = summary(matrix_run)
    header, *rows = cells_of(rendered_matrix["dom"], "comparison")
    column = {name: i for i, name in enumerate(header)}
    by_name = {row[column["name"]]: row for row in rows}
    assert sorted(by_name) == sorted([*results["members"], *results["ensembles"]]) and len(rows) == 4
    for name, row in by_name.items():
        record = results["members"].get(name) or results["ensembles"][name]
        assert row[column["status"]] == record["status"]
        assert row[column["kind"]] == ("member" if name in results["members"] else "ensemble")
        for metric, seen in record["metrics"]["val"].items():
            if f"{metric} (↑)" in column:
                assert row[column[f"{metric} (↑)"]] == f"{seen:.4g}", (name, metric)
    marks = {name: row[column["best"]] for name, row in by_name.items()}
    monitor = f"{results['monitor']} (↑)"
    for kind, plural in (("member", "members"), ("ensemble", "ensembles")):  # the summary's best and every row tied with it
        best = by_name[results[f"best_{kind}"]][column[monitor]]
        tied = sorted(n for n in results[plural] if by_name[n][column[monitor]] == best)
        assert sorted(n for n, m in marks.items() if f"best {kind}" in m) == tied and results[f"best_{kind}"] in tied
        assert all((f"best {kind} (tie)" in marks[n]) == (len(tied) > 1) for n in tied)
    values = [float(row[column[monitor]]) for row in rows]
    assert values == sorted(values, reverse=True)  # best first by the monitored metric
    starred = [row[column["name"]] for row in rows if float(row[column[monitor]]) == values[0]]  # every one of a tie
    assert [n for n, m in marks.items() if "★ best" in m] == starred and rows[0][column["name"]] in starred


def test_the_matrix_dom_shows_every_member_with_its_stages_and_gate_decisions(rendered_matrix, matrix_run):
    dom = rendered_matrix["dom"]
    for name in summary(matrix_run)["members"]:
        member = summary(matrix_run / "members" / name)
        assert f'id="member-{name}"' in dom
        stages = rows_of(dom, f"member-{name}-stages")[1:]
        assert len(stages) == len(member["stages"]) == 2
        for row, stage in zip(stages, member["stages"]):
            assert stage in row, row
        decisions = member["gate_decisions"]
        assert [d["passed"] for d in decisions] == [True, False]
        gates = rows_of(dom, f"member-{name}-gates")[1:]
        assert len(gates) == len(decisions)
        for row, decision in zip(gates, decisions):
            assert decision["stage"] in row and decision["condition"] in row, row
            assert ("✓ passed" if decision["passed"] else "✗ failed") in row and decision["action"] in row, row


def test_the_matrix_screenshot_shows_the_bar_chart_and_makes_no_request(rendered_matrix):
    from stagedsl.report.draw import PALETTE

    shot = rendered_matrix["screenshot"]
    assert_not_blank(shot, min_size=(1280, 2000))
    assert pixels_near(shot, PALETTE[0], tolerance=20) > 500  # the first variant's bars, near the top of the page
    assert_offline(rendered_matrix)
    assert len(pngs(rendered_matrix["folder"])) == 1 + 2 * 3  # the bar chart; loss, metrics, LR of each member
    for png in pngs(rendered_matrix["folder"]):
        assert_not_blank(png)


def test_the_search_dom_names_every_trial_with_its_state_and_marks_the_best(rendered_search, search_run):
    results = summary(search_run)
    header, *rows = cells_of(rendered_search["dom"], "trials")
    column = {name: i for i, name in enumerate(header)}
    assert len(rows) == len(results["trials"]) == 6
    for row, trial in zip(rows, results["trials"]):
        assert row[column["trial"]].split()[0] == str(trial["trial"]) and row[column["state"]] == trial["state"], row
        for key, value in trial["params"].items():
            assert row[column[key]] == (f"{value:.4g}" if isinstance(value, float) else value), (key, row)
    assert sorted({t["state"] for t in results["trials"]}) == ["complete", "failed", "pruned"]
    (best,) = [row for row in rows if "★ best" in row[column["trial"]]]
    assert best[column["trial"]] == f"{results['best']['trial']} ★ best"
    assert f'id="trial-{results["best"]["trial"]}"' in rendered_search["dom"]  # the best trial drawn as a run


def test_the_search_screenshot_shows_its_figures_and_makes_no_request(rendered_search):
    from stagedsl.report.search import BEST_SO_FAR_COLOR

    shot = rendered_search["screenshot"]
    assert_not_blank(shot, min_size=(1280, 2000))
    assert pixels_near(shot, BEST_SO_FAR_COLOR, tolerance=20) > 100  # the best-so-far line of the first figure
    assert_offline(rendered_search)
    for png in pngs(rendered_search["folder"]):
        assert_not_blank(png)
