"""dgviz.record on diffusers' DiffusionGemmaPipeline, with each of its schedulers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import DIFFUSERS_SKIP_REASON, needs_diffusers

import dgviz
from dgviz.testing import tiny_model

pytestmark = needs_diffusers
diffusers = pytest.importorskip("diffusers", reason=DIFFUSERS_SKIP_REASON)

SCHEDULERS = {
    "entropy_bound": lambda: diffusers.EntropyBoundScheduler(entropy_bound=0.5),
    "ddim": lambda: diffusers.DiscreteDDIMScheduler(),
    "ddim_corrector": lambda: diffusers.DiscreteDDIMScheduler(corrector_steps=1),
    "block_refinement": lambda: diffusers.BlockRefinementScheduler(),
}


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return tiny_model()


def _pipe(model, tok, scheduler):
    pipe = diffusers.DiffusionGemmaPipeline(model=model, scheduler=scheduler, processor=tok)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_pipeline_recording_matches_and_is_consistent(model_and_tokenizer, name):
    model, tok = model_and_tokenizer
    pipe = _pipe(model, tok, SCHEDULERS[name]())
    kwargs = {"gen_length": 32, "num_inference_steps": 6}
    ref = pipe(prompt="the cat sat", generator=torch.Generator().manual_seed(11), **kwargs)
    trace = dgviz.record(pipe, None, "the cat sat", seed=11, **kwargs)

    np.testing.assert_array_equal(trace.output_ids, ref.sequences.numpy())
    assert trace.meta["source"] == "diffusers"
    assert trace.settings["sampler"] == type(pipe.scheduler).__name__
    assert trace.complete
    assert trace.has_routing
    # the draft is what the pipeline kept: the next step's input, and finally the output
    for c in range(trace.num_canvases):
        steps = trace.canvas_steps(c)
        for s, nxt in itertools.pairwise(steps):
            np.testing.assert_array_equal(trace.draft[0, s], trace.canvas_in[0, nxt])
        np.testing.assert_array_equal(trace.draft[0, steps[-1]],
                                      trace.output_ids[0, c * 16 : (c + 1) * 16])
        # a canvas that ended before its step budget was ended by the adaptive stop
        assert trace.stop[0, steps[-1]] == (len(steps) < trace.settings["max_denoising_steps"])
    # forward passes include corrector sweeps; tokens per forward follows from them
    passes = trace.settings["forward_passes"]
    assert passes >= trace.num_steps
    # ... counted per step (the synced views' axis), adding up to the total
    per_step = trace.step_passes()
    assert per_step.shape == (trace.num_steps,)
    assert per_step.sum() == passes == trace.forward_passes()
    assert (per_step >= 1).all()
    if name == "ddim_corrector":
        assert passes > trace.num_steps
        assert per_step.max() == 2
    else:
        assert (per_step == 1).all()
    # the payload the widget syncs on carries them
    from dgviz import _codec
    from dgviz.payload import run_payload
    sent = _codec.decode(run_payload(trace, 0)["arrays"]["passes"])
    np.testing.assert_array_equal(sent, per_step)
    out = trace.output_ids[0]
    # like transformers: tokens up to the first eos count, the rest is padding
    eos = np.flatnonzero(out == tok.eos_token_id)
    generated = int(eos[0]) + 1 if eos.size else out.size
    np.testing.assert_allclose(trace.tokens_per_forward, [generated / passes], rtol=1e-6)
    assert (trace.confidence > 0).all()
    assert (trace.confidence <= 1).all()
    assert (trace.entropy >= 0).all()


@pytest.mark.parametrize("name", ["entropy_bound", "block_refinement"])
def test_committed_positions_hold_the_sampled_token(model_and_tokenizer, name):
    model, tok = model_and_tokenizer
    trace = dgviz.record(_pipe(model, tok, SCHEDULERS[name]()), None, "the cat", seed=2,
                         gen_length=16, num_inference_steps=5)
    previous = np.zeros(trace.canvas_length, bool)
    for s in trace.canvas_steps(0)[:-1]:
        acc = trace.accepted[0, s]
        new = acc & ~previous
        np.testing.assert_array_equal(trace.draft[0, s][new], trace.sampled[0, s][new])
        if name == "block_refinement":  # its mask is cumulative: a commit is never taken back
            assert (acc >= previous).all()
        previous = acc


def test_entropy_bound_scheduler_explainer_uses_its_bound(model_and_tokenizer):
    model, tok = model_and_tokenizer
    trace = dgviz.record(_pipe(model, tok, SCHEDULERS["entropy_bound"]()), None, "the cat",
                         seed=0, gen_length=16, num_inference_steps=4)
    ex = trace.sampler_explainer(1)
    assert ex["bound"] == 0.5
    np.testing.assert_array_equal(ex["accepted"], ex["criterion"] <= 0.5 + 1e-5)
    # temperature anneals from t_max to t_min as diffusers' scheduler does
    assert trace.temperature[0] == pytest.approx(0.8)
    assert trace.temperature[-1] < trace.temperature[0]


def test_pipeline_patches_are_removed(model_and_tokenizer):
    model, tok = model_and_tokenizer
    pipe = _pipe(model, tok, SCHEDULERS["ddim_corrector"]())
    dgviz.record(pipe, None, "the cat", seed=0, gen_length=16, num_inference_steps=3)
    assert "step" not in pipe.scheduler.__dict__
    assert "step_correct" not in pipe.scheduler.__dict__
    assert "_prepare_inputs" not in pipe.__dict__
    assert not [m for m in model.modules() if m._forward_hooks]


def test_pipeline_rejects_batches_and_ids(model_and_tokenizer):
    model, tok = model_and_tokenizer
    pipe = _pipe(model, tok, SCHEDULERS["ddim"]())
    with pytest.raises(ValueError, match="one prompt at a time"):
        dgviz.record(pipe, None, ["the cat", "the mat"])
    with pytest.raises(TypeError, match="takes text or a chat"):
        dgviz.record(pipe, None, [4, 5, 6])
    with pytest.raises(ValueError, match="empty"):
        dgviz.record(pipe, None, "")


def test_an_incompatible_transformers_is_refused_before_running(model_and_tokenizer, monkeypatch):
    """diffusers 0.42 with transformers >= 5.24 (the mask builder renamed past_key_values)."""
    from transformers import DiffusionGemmaDecoderModel

    model, tok = model_and_tokenizer
    pipe = _pipe(model, tok, diffusers.EntropyBoundScheduler())

    def renamed(config, inputs_embeds, cache, decoder_attention_mask=None):
        raise AssertionError("the pipeline ran")  # pragma: no cover

    monkeypatch.setattr(DiffusionGemmaDecoderModel, "create_diffusion_decoder_attention_mask",
                        staticmethod(renamed))
    with pytest.raises(RuntimeError, match=r"past_key_values=.*transformers < 5\.24"):
        dgviz.record(pipe, None, "the cat sat", seed=0)
    assert dgviz.schedules.diffusers_unavailable() is not None
    assert "ddim" not in dgviz.presets()

