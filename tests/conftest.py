"""Shared pytest fixtures (generic: any test file may use them)."""

from __future__ import annotations

import pytest


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
