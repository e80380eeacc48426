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


@pytest.mark.parametrize(("args", "says"), [
    (["--steps", "0"], "max_denoising_steps must be >= 1"),
    (["--max-new-tokens", "0"], "max_new_tokens must be >= 1"),
    (["--seed", "-1"], "seed must be >= 0"),
])
def test_bad_record_arguments_are_one_line_messages(checkpoint, tmp_path, capsys, args, says):
    out = tmp_path / "run.dgtrace"
    assert main(["record", str(checkpoint), "the cat", "--out", str(out), *args]) == 2
    assert says in capsys.readouterr().err
    assert not out.exists()


def test_a_missing_model_is_a_one_line_message(tmp_path, capsys):
    assert main(["record", str(tmp_path / "nowhere"), "the cat"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dgviz record: ")
    assert "Traceback" not in err


def test_demo_writes_the_report(tmp_path, capsys):
    """README's main job, on one task of the shipped model (the default runs all of them)."""
    import json

    from dgviz.demo import get_task

    assert main(["demo", "--out", str(tmp_path), "--tasks", "pets"]) == 0
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [row["task"] for row in rows] == ["pets"]
    trace = dgviz.load_trace(tmp_path / "pets.dgtrace")
    item = get_task("pets").generate(1, seed=2026)[0]  # the CLI's default --item-seed
    assert rows[0]["score"] == get_task("pets").score(item, trace.text[0])
    assert rows[0]["steps"] == trace.num_steps >= 1
    assert (tmp_path / "pets.html").stat().st_size > 10_000  # the offline replay
    index = (tmp_path / "index.html").read_text()
    assert 'href="pets.html"' in index
    assert "report:" in capsys.readouterr().out
    assert main(["demo", "--out", str(tmp_path), "--tasks", "chess"]) == 2
    assert "unknown demo task 'chess'" in capsys.readouterr().err
