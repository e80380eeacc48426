"""The documentation site builds with warnings as errors (``mkdocs build --strict``).

Strict mode fails on broken links between pages, links to missing images or anchors, nav entries
without a file, and docstrings that mkdocstrings cannot render. Notebooks are rendered without
executing them (tests/test_notebooks.py executes them).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI") == "true"
NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter")


def _need_mkdocs() -> None:
    missing = [m for m in NEEDED if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:
        if IN_CI:
            pytest.fail(f"the docs toolchain is not installed: {missing}")
        pytest.skip(f"the docs toolchain is not installed ({missing}): pip install 'dgviz[docs]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    _need_mkdocs()
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    return out


def test_docs_build_strict(site):
    for page in ("index.html", "quickstart/index.html", "concepts/index.html", "api/index.html",
                 "internals/index.html", "performance/index.html",
                 "troubleshooting/index.html", "real-model/index.html", "branching/index.html"):
        assert (site / page).stat().st_size > 0, page


def test_api_reference_has_the_public_names(site):
    html = (site / "api" / "index.html").read_text()
    for anchor in ("dgviz.recording.record", "dgviz.Trace", "dgviz.Trace.lock_in",
                   "dgviz.Trace.sampler_explainer", "dgviz.load_trace", "dgviz.Timeline",
                   "dgviz.show", "dgviz.plots.confidence_heatmap", "dgviz.plots.expert_map",
                   "dgviz.demo_model", "dgviz.demo.sudoku.SudokuTask.score", "dgviz.branch"):
        assert f'id="{anchor}"' in html, f"API reference lacks {anchor}"
    # the record docstring's parameters were parsed, not dumped as text
    assert re.search(r"max_denoising_steps", html)


def test_notebooks_are_rendered(site):
    for name in ("01_quickstart", "02_how_text_diffusion_works", "04_expert_routing",
                 "05_real_diffusiongemma", "06_branching"):
        page = site / "notebooks" / name / "index.html"
        assert page.exists(), f"{name} is not rendered"
        assert "dgviz.record" in page.read_text(), f"{name} rendered without its code"
