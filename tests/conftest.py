"""Shared pytest fixtures (generic: any test file may use them)."""

from __future__ import annotations

import pytest

from dgviz.recording.diffusers_loop import diffusers_incompatibility

_DIFFUSERS_PROBLEM = diffusers_incompatibility()
DIFFUSERS_SKIP_REASON = (
    f"diffusers' pipeline cannot run here: {_DIFFUSERS_PROBLEM}. CI runs these tests in the "
    "diffusers environment (bash scripts/setup.sh diffusers).")
needs_diffusers = pytest.mark.skipif(_DIFFUSERS_PROBLEM is not None, reason=DIFFUSERS_SKIP_REASON)


@pytest.fixture(scope="session")
def tiny():
    """``(model, tokenizer)``: the tiny untrained DiffusionGemma from `dgviz.testing`."""
    from dgviz.testing import tiny_model

    return tiny_model()


@pytest.fixture(scope="session")
def tiny_trace(tiny):
    """A recorded tiny-model run: 1 row, 3 canvases x 16 positions, 8 steps each, with routing."""
    import dgviz

    model, tokenizer = tiny
    return dgviz.record(model, tokenizer, "the cat sat", seed=0, max_new_tokens=48,
                        max_denoising_steps=8)
