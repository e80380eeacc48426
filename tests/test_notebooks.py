"""Execute the teaching notebooks from a clean kernel, as a reader would ("Run all").

Notebooks 01-04 and 06 run on the shipped demo model; 05 (the real 26B model on a GPU) runs
with its model-loading cell swapped for a tiny model from `dgviz.testing`, so every other call in
it is exercised. 07 (LLaDA2 beside DiffusionGemma) records diffusers' LLaDA2Pipeline on tiny models
built in code: it runs in the diffusers environment and skips, saying why, where diffusers is
missing. Each notebook runs in a fresh kernel in a temporary copy of the folder, offline
(``HF_HUB_OFFLINE=1``).

The kernels run with one torch thread (``OMP_NUM_THREADS=1``): the models are tiny, and on a
small shared machine torch's thread pool costs far more than it gains (a demo-model Sudoku
recording measured 1.7 s with one thread and 32 s with two on a busy 2-core machine).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from dgviz.demo import TASKS

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
IN_CI = os.environ.get("CI") == "true"
DEMO_CHECKPOINT = ROOT / "dgviz" / "demo" / "checkpoint" / "model.safetensors"
TIMEOUT = 300  # seconds per cell

TINY_MODEL_CELL = """\
import torch
from dgviz.testing import tiny_model

model, tokenizer = tiny_model()
SETTINGS = dict(max_new_tokens=32, max_denoising_steps=8)
"""


def _notebook(name: str) -> Path:
    path = NOTEBOOKS / f"{name}.ipynb"
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path.relative_to(ROOT)} is missing")
        pytest.skip(f"{path.relative_to(ROOT)} does not exist yet")
    return path


def _need_demo_model() -> None:
    if not DEMO_CHECKPOINT.exists():
        if IN_CI:
            pytest.fail(f"the demo checkpoint {DEMO_CHECKPOINT.relative_to(ROOT)} is missing")
        pytest.skip("the demo checkpoint is not committed yet")


def _execute(path: Path, tmp_path: Path, monkeypatch, replace: dict[str, str] | None = None):
    """Run a copy of the notebook in ``tmp_path``; return the executed notebook."""
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for tag in cell.metadata.get("tags", []):
            if replace and tag in replace:
                cell.source = replace[tag]
    nbformat.write(nb, work / path.name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(
        nb, timeout=TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell raised:\n{err}")
    return nb, work


def _text(nb) -> str:
    """All text the notebook printed (streams and plain-text results), in order."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _mimetypes(nb) -> list[str]:
    return [
        mime
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.output_type in ("execute_result", "display_data")
        for mime in out.get("data", {})
    ]


# ---------------------------------------------------------------------------- stored notebooks
def test_stored_notebooks_have_no_outputs():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert paths, "no notebooks found"
    for path in paths:
        nb = json.loads(path.read_text())
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] == "code":
                assert cell.get("outputs") == [], f"{path.name} cell {i} has stored outputs"
                assert cell.get("execution_count") is None, f"{path.name} cell {i} has a count"


# ---------------------------------------------------------------------------- executed
def test_quickstart(tmp_path, monkeypatch):
    path = _notebook("01_quickstart")
    _need_demo_model()
    nb, work = _execute(path, tmp_path, monkeypatch)
    text = _text(nb)
    score = re.search(r"^score: ([01]\.\d+)$", text, re.M)
    assert score, "the quickstart prints the Sudoku score"
    # the shown puzzle is chosen by a stated rule: the first of seeds 0.. that the model solves
    chosen = re.search(r"^(solved at try \d+: the puzzle of generator seed \d+|none of the first "
                       r"20 puzzles was solved)", text, re.M)
    assert chosen, "the quickstart says how its puzzle was chosen"
    if chosen.group(1).startswith("solved"):
        assert score.group(1) == "1.0", "the run shown as solved is a valid solution"
    assert re.search(r"same answer after reloading: True", text)
    mimes = _mimetypes(nb)
    assert "application/vnd.jupyter.widget-view+json" in mimes, "the timeline widget is shown"
    assert "application/vnd.plotly.v1+json" in mimes, "the heatmap is shown"
    assert (work / "sudoku.dgtrace").stat().st_size > 0
    assert (work / "sudoku.html").stat().st_size > 0


def test_how_text_diffusion_works(tmp_path, monkeypatch):
    path = _notebook("02_how_text_diffusion_works")
    _need_demo_model()
    nb, _ = _execute(path, tmp_path, monkeypatch)
    text = _text(nb)
    # the entropy-bound rule, recomputed from the trace, gives what the sampler accepted
    rule = re.search(r"k from the rule: (\d+)\s+accepted by the sampler: (\d+)", text)
    assert rule
    assert rule.group(1) == rule.group(2)
    # tokens per forward computed by hand equals transformers' own number
    tpf = re.search(r"tokens per forward: ([\d.]+)\s+\(transformers says ([\d.]+)\)", text)
    assert tpf
    assert tpf.group(1) == tpf.group(2)
    # the encoder read every token once: prompt + finished canvases
    enc = re.search(r"tokens the encoder read: (\d+) = prompt (\d+) \+ (\d+) finished canvases "
                    r"x (\d+)", text)
    assert enc
    total, prompt, canvases, length = map(int, enc.groups())
    assert total == prompt + canvases * length
    assert canvases >= 1
    assert "Answer 3" in "".join(c.source for c in nb.cells), "the answers are at the end"
    assert "valid: " in text  # answer 3 ran both recordings
    # the lesson's run is chosen by a stated rule, and is valid whenever one of the ten was
    solved = re.search(r"^30 blanks, generator seeds 0-9, solved: \[([\d, ]*)\]$", text, re.M)
    assert solved
    if solved.group(1):
        assert re.search(r"^valid solution keeping the givens: True$", text, re.M)
    # the kept token is the drawn one; the temperature is transformers' schedule
    assert re.search(r"^the next step read the drawn token at every accepted position: True$",
                     text, re.M)
    assert re.search(r"^recorded temperature = .* at every step: True$", text, re.M)
    # a failure on purpose, and how often the model fails
    hard = re.search(r"^40 blanks: solved (\d+) of 10; 30 blanks: solved (\d+) of 10", text, re.M)
    assert hard
    if int(hard.group(1)) < 10:
        assert re.search(r"^the failed run: generator seed \d+", text, re.M)
        assert re.search(r"^\d+ of \d+ blank cells wrong", text, re.M)
    # the encoder is causal: a changed prompt token moves nothing before it
    assert re.search(r"encoder outputs moved at 0 of the \d+ positions before it", text)


def test_compare_schedules(tmp_path, monkeypatch):
    path = _notebook("03_compare_schedules")
    _need_demo_model()
    nb, _ = _execute(path, tmp_path, monkeypatch)
    assert "application/vnd.plotly.v1+json" in _mimetypes(nb), "a comparison figure is shown"
    text = _text(nb)
    # the risk exercise's puzzle is chosen by a stated rule at run time, and the rule finds one
    # on which the two schedules really differ in validity (issue 16)
    assert re.search(r"^puzzles tried: \d+; default solved \d+ of them; few steps failed "
                     r"1 of those$", text, re.M)
    lost = re.search(r"^seeds default solved and few steps did not: \[([\d, ]*)\]", text, re.M)
    assert lost
    assert lost.group(1).split(", ")[0] == "0"
    assert re.search(r"^Pareto front, cheapest first:$", text, re.M)


def test_expert_routing(tmp_path, monkeypatch):
    path = _notebook("04_expert_routing")
    _need_demo_model()
    nb, _ = _execute(path, tmp_path, monkeypatch)
    text = _text(nb)
    layers = re.findall(r"^layer (\d+): busiest expert", text, re.M)
    assert layers
    assert layers == [str(i) for i in range(len(layers))]
    assert len(re.findall(r"^layer \d+: NMI with token read now [\d.]+", text, re.M)) == len(layers)
    for task in TASKS:
        assert re.search(rf"^{task}\s+solved \d+%", text, re.M), f"{task} is in the task batch"
    # routing between steps: when routing settles vs when the tokens do, on ten puzzles
    assert re.search(r"^routing settled \(0\.95\) after 95% of the tokens in \d+ of 10 runs, "
                     r"at the same step in \d+, before in \d+$", text, re.M)
    assert re.search(r"^routing settled \(0\.99\) after all tokens in \d+ of 10 runs "
                     r"\(never in \d+\), before in \d+$", text, re.M)
    assert _mimetypes(nb).count("application/vnd.plotly.v1+json") >= 7


def test_branching(tmp_path, monkeypatch):
    """Notebook 06: a wrong acceptance found in the trace, branched with the right digit; a row
    held from step 0; the widget's branch equals dgviz.branch."""
    path = _notebook("06_branching")
    _need_demo_model()
    nb, _ = _execute(path, tmp_path, monkeypatch)
    text = _text(nb)
    found = re.search(r"^step (\d+): the sampler accepted '(\d)' at cell (\d+) .* the solution "
                      r"has '(\d)'$", text, re.M)
    assert found, "the notebook finds a wrongly accepted digit"
    assert found.group(2) != found.group(4)
    assert re.search(r"^steps before the fork unchanged: True$", text, re.M)
    assert re.search(r"^the cell reads the right digit from the fork to the end: True$", text,
                     re.M)
    assert len(re.findall(r"^(recorded|branch)\s+valid: (True|False)\s+steps:", text, re.M)) == 2
    assert re.search(r"^(still not valid: \d+ cells wrong|valid: the one digit was enough)", text,
                     re.M)
    assert re.search(r"^runs that kept a wrongly accepted digit: \d+ of 12; one fixed digit "
                     r"made the grid valid in \d+ of them$", text, re.M)
    assert re.search(r"^held tokens: 9 e\.g\.", text, re.M)
    assert re.search(r"^same run as dgviz\.branch: True$", text, re.M)
    assert re.search(r"^done: \d+ steps", text, re.M), "the widget's branch finished"
    mimes = _mimetypes(nb)
    # synced pair, the held run, the branching Timeline
    assert mimes.count("application/vnd.jupyter.widget-view+json") >= 3
    assert mimes.count("application/vnd.plotly.v1+json") == 2, "lock-in map + routing similarity"


def test_real_model_notebook_on_a_tiny_model(tmp_path, monkeypatch):
    """Notebook 05 with its loading cell swapped: every other call runs as written."""
    path = _notebook("05_real_diffusiongemma")
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "load-model" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "notebook 05 has one cell tagged load-model"
    assert "google/diffusiongemma-26B-A4B-it" in tagged[0].source
    assert 'device_map="auto"' in tagged[0].source
    nb, work = _execute(path, tmp_path, monkeypatch, replace={"load-model": TINY_MODEL_CELL})
    text = _text(nb)
    assert re.search(r"same tokens: True", text), "a recorded run equals plain generate"
    assert re.search(r"same text: True", text), "routing=False records the same run"
    assert (work / "haiku.html").stat().st_size > 0
    shutil.rmtree(work, ignore_errors=True)


def test_other_models(tmp_path, monkeypatch):
    """Notebook 07: a LLaDA2Pipeline run recorded, replayed and compared with DiffusionGemma."""
    from dgviz.recording.llada2_loop import llada2_incompatibility

    path = _notebook("07_other_models")
    problem = llada2_incompatibility()
    if problem is not None:
        pytest.skip(f"diffusers' LLaDA2Pipeline cannot run here: {problem}. CI runs notebook 07 "
                    "in the diffusers environment (bash scripts/setup.sh diffusers).")
    nb, work = _execute(path, tmp_path, monkeypatch)
    text = _text(nb)
    assert re.search(r"^same tokens: True$", text, re.M), "recorded = the pipeline's own run"
    assert re.search(r"^same prompt tokens: True$", text, re.M), "both models read one prompt"
    assert re.search(r"^family: llada2 · sampler: BlockRefinementScheduler", text, re.M)
    edits = re.findall(r"^block \d+: steps filling masks \d+ · editing steps \d+ · edits (\d+)$",
                       text, re.M)
    assert len(edits) == 3
    assert sum(map(int, edits)) > 0, "the editing section shows edits"
    # the side-by-side summary: one row per family
    assert re.search(r"^\s*DiffusionGemma\s+diffusion_gemma\s+EntropyBoundSampler\s", text, re.M)
    assert re.search(r"^\s*LLaDA2\s+llada2\s+BlockRefinementScheduler\s", text, re.M)
    assert len(re.findall(r"^  positions in lock-in order \[", text, re.M)) == 2
    assert re.search(r"^loaded: llada2 \d+ · same states: True$", text, re.M)
    mimes = _mimetypes(nb)
    assert mimes.count("application/vnd.jupyter.widget-view+json") == 2, "timeline + comparison"
    assert mimes.count("application/vnd.plotly.v1+json") == 2, "lock-in map + convergence"
    assert (work / "llada2.html").stat().st_size > 0
