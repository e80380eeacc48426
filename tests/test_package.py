"""Packaging: one version everywhere, and the wheel carries the built front end and the demo
model."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import dgviz

ROOT = Path(__file__).resolve().parents[1]


def test_python_and_npm_versions_agree():
    package = json.loads((ROOT / "js" / "package.json").read_text())
    assert package["version"] == dgviz.__version__


@pytest.mark.slow
def test_wheel_contains_the_bundle_and_the_demo_checkpoint(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("dgviz-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "dgviz/static/widget.js" in names
    assert "dgviz/static/widget.css" in names
    assert "dgviz/demo/checkpoint/model.safetensors" in names
    assert "dgviz/demo/checkpoint/tokenizer.json" in names
    assert not any(n.startswith(("tests/", "js/", "notebooks/")) for n in names)
    assert wheel.stat().st_size < 40 * 2**20  # the checkpoint is capped at 30 MB
