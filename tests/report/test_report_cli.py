"""`staged report` as a command: bad usage exits 2 with a coded message, matplotlib missing names the
extra, --open hands the page to the browser."""

from __future__ import annotations

import sys

from stagedsl.cli.app import run_cli


def test_a_folder_that_is_not_a_run_exits_2(tmp_path, capsys):
    assert run_cli(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error[E501]" in err and "has no plan.json" in err and "Traceback" not in err
    assert run_cli(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_comparing_a_matrix_run_points_at_its_members(tmp_path, gated_run, capsys):
    import shutil

    (tmp_path / "matrix.json").write_text("{}")
    shutil.copytree(gated_run, tmp_path / "members" / "a-s0")
    assert run_cli(["report", str(tmp_path), str(gated_run), "--out", str(tmp_path / "vs")]) == 2
    err = capsys.readouterr().err
    assert "error[E501]" in err and "is a matrix run" in err and f"staged report {tmp_path}` draws the whole matrix" in err
    assert f"staged report {tmp_path / 'members' / 'a-s0'} " in err
    assert run_cli(["report", str(tmp_path / "members" / "a-s0"), str(gated_run), "--out", str(tmp_path / "vs")]) == 0


def test_three_run_dirs_exit_2(tmp_path, capsys):
    assert run_cli(["report", str(tmp_path), str(tmp_path), str(tmp_path)]) == 2
    assert "unexpected extra argument" in capsys.readouterr().err


def test_without_matplotlib_the_error_names_the_extra(gated_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert run_cli(["report", str(gated_run), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "error[E103]" in err and "staged report needs `matplotlib`" in err and "Traceback" not in err
    assert "pip install 'stagedsl[report]'" in err


def test_open_hands_the_page_to_the_browser(gated_run, tmp_path, monkeypatch, capsys):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    assert run_cli(["report", str(gated_run), "--out", str(tmp_path / "r"), "--open"]) == 0
    assert opened == [(tmp_path / "r" / "index.html").resolve().as_uri()]
