"""The dgviz command line on a tiny model saved to disk."""

from __future__ import annotations

import pytest

import dgviz
from dgviz.cli import main
from dgviz.testing import tiny_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    model, tok = tiny_model()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_record_then_info_and_export(checkpoint, tmp_path, capsys):
    out = tmp_path / "run.dgtrace"
    assert main(["record", str(checkpoint), "the cat sat", "--out", str(out), "--seed", "3",
                 "--max-new-tokens", "32", "--steps", "4"]) == 0
    trace = dgviz.load_trace(out)
    assert trace.num_steps == 8
    assert trace.settings["seed"] == 3
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "8 steps" in printed
    assert "forward passes" in printed
    html = tmp_path / "run.html"
    assert main(["export", str(out), "--html", str(html)]) == 0
    assert html.stat().st_size > 1000


def test_errors_are_one_line_messages(tmp_path, capsys):
    (tmp_path / "x.dgtrace").write_text("not a trace")
    assert main(["info", str(tmp_path / "x.dgtrace")]) == 2
    assert "not a readable dgviz trace" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "x.dgtrace")]) == 2
    assert "say what to write" in capsys.readouterr().err
