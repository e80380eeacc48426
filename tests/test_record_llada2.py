"""dgviz.record on diffusers' LLaDA2Pipeline (LLaDA 2.x, masked diffusion), with a tiny LLaDA2
stand-in built in code (`dgviz.testing.tiny_llada2_pipeline`: LLaDA2's modeling code ships only
as remote code, which would need a download)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import dgviz
from dgviz.recording.llada2_loop import llada2_incompatibility
from dgviz.trace import KEPT, MASKED, MASKED_STATES, NEW, RENOISED, UNIFORM_STATES

PROBLEM = llada2_incompatibility()
pytestmark = pytest.mark.skipif(
    PROBLEM is not None, reason=f"diffusers' LLaDA2Pipeline cannot run here: {PROBLEM}")

PROMPT = "the cat sat"
# (pipeline settings, what they exercise)
CONFIGS = {
    "greedy": {"gen_length": 16, "num_inference_steps": 4},
    "sampled": {"gen_length": 16, "num_inference_steps": 4, "temperature": 1.0, "threshold": 0.03,
                "editing_threshold": 0.03},
    "editing": {"gen_length": 16, "num_inference_steps": 4, "threshold": 0.05,
                "editing_threshold": 0.02, "max_post_steps": 6},
    "no_editing": {"gen_length": 24, "num_inference_steps": 3, "threshold": 0.05,
                   "editing_threshold": None, "block_length": 8},
}


@pytest.fixture(scope="module")
def pipe():
    from dgviz.testing import tiny_llada2_pipeline

    torch.set_num_threads(1)
    return tiny_llada2_pipeline()


def _record(pipe, name, seed=3, **extra):
    return dgviz.record(pipe, None, PROMPT, seed=seed, **CONFIGS[name], **extra)


def _clean(pipe) -> None:
    assert "step" not in pipe.scheduler.__dict__
    assert "_prepare_input_ids" not in pipe.__dict__
    assert not [m for m in pipe.model.modules() if m._forward_hooks]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_output_equals_the_unrecorded_pipeline(pipe, name):
    ref = pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(3), **CONFIGS[name])
    trace = _record(pipe, name)
    np.testing.assert_array_equal(trace.output_ids, ref.sequences.numpy())
    assert trace.text == ref.texts  # decoded as the pipeline does: up to the first eos
    assert trace.complete
    assert trace.has_routing
    assert trace.family == "llada2"
    assert trace.meta["source"] == "diffusers"
    assert trace.settings["sampler"] == "BlockRefinementScheduler"
    assert trace.mask_token_id == pipe.tokenizer.mask_token_id
    assert trace.settings["forward_passes"] == trace.num_steps  # one model call per step
    assert trace.canvas_length == CONFIGS[name].get("block_length", 8)
    np.testing.assert_array_equal(trace.prompt_ids[0, :3], pipe.tokenizer.encode("<bos> user the"))
    _clean(pipe)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_masked_positions_are_their_own_state(pipe, name):
    trace = _record(pipe, name)
    mask = trace.mask_token_id
    assert trace.state_values == MASKED_STATES
    assert not (trace.states == RENOISED).any()  # masked diffusion never re-noises
    np.testing.assert_array_equal(trace.states == MASKED, trace.draft == mask)
    np.testing.assert_array_equal(trace.accepted, trace.draft != mask)
    for c in range(trace.num_canvases):
        steps = trace.canvas_steps(c)
        first = trace.canvas_in[0, steps[0]]
        assert (first == mask).all()  # every block starts fully masked (the prompt fills one)
        # the block the model read is what the pipeline kept after the step before
        for s, nxt in itertools.pairwise(steps):
            np.testing.assert_array_equal(trace.draft[0, s], trace.canvas_in[0, nxt])
        # a mask filled at a step holds the token the scheduler sampled there
        for s in steps:
            filled = (trace.canvas_in[0, s] == mask) & (trace.draft[0, s] != mask)
            np.testing.assert_array_equal(trace.draft[0, s][filled], trace.sampled[0, s][filled])
            assert (trace.states[0, s][filled] != KEPT).all()
        # the last step of a block is its output
        lo = c * trace.canvas_length
        out = trace.output_ids[0, lo: lo + trace.canvas_length]
        np.testing.assert_array_equal(trace.draft[0, steps[-1], : out.size], out)


def test_edits_are_flips_and_commit_a_token(pipe):
    trace = _record(pipe, "editing")
    mask = trace.mask_token_id
    edits = np.zeros(trace.canvas_in.shape, bool)
    for c in range(trace.num_canvases):
        steps = trace.canvas_steps(c)
        d = trace.draft[0, steps]
        edits[0, steps[1:]] = (d[1:] != d[:-1]) & (d[:-1] != mask)
        np.testing.assert_array_equal(trace.flips[0, c], edits[0, steps].sum(axis=0))
    assert edits.any(), "this setting should edit (the tiny model is unsure)"
    # an edit replaces a committed token with the one sampled: "accepted this step"
    assert (trace.states[edits] != MASKED).all()
    assert np.isin(trace.states[edits], [NEW, trace.state_values[-1]]).all()
    np.testing.assert_array_equal(trace.draft[edits], trace.sampled[edits])
    # editing steps come after a block's masks are filled: outside the step budget (0 left)
    assert (trace.step_remaining == 0).any()
    assert trace.settings["editing"] is True


def test_without_editing_filling_masks_is_no_flip(pipe):
    trace = _record(pipe, "no_editing")
    assert trace.flips.sum() == 0
    assert trace.settings["editing"] is False
    # a block that fills its masks early still gets one more model call (the pipeline's loop
    # checks for masks before the call): outside the budget (0 left), it changes nothing
    extra = trace.step_remaining == 0
    assert extra.any()
    np.testing.assert_array_equal(trace.draft[0, extra], trace.canvas_in[0, extra])
    # a block that filled its masks before its budget is marked as stopped early
    for c in range(trace.num_canvases):
        steps = trace.canvas_steps(c)
        filling = int((trace.step_remaining[steps] > 0).sum())
        assert trace.stop[0, steps[-1]] == (filling < trace.settings["max_denoising_steps"])


def test_confidence_is_the_sampling_distribution(pipe):
    seen = []

    def keep(_pipe, _step, _timestep, kwargs):
        seen.append(kwargs["sampled_probs"].clone())
        return {}

    trace = _record(pipe, "greedy", callback_on_step_end=keep,
                    callback_on_step_end_tensor_inputs=["sampled_probs"])
    assert len(seen) == trace.num_steps  # the caller's callback still runs, every step
    # greedy: the sampled token is the argmax, its probability the confidence
    np.testing.assert_allclose(trace.confidence[0], torch.stack(seen)[:, 0].numpy(), rtol=1e-5)
    np.testing.assert_array_equal(trace.topk_ids[0, ..., 0], trace.sampled[0])
    assert (trace.entropy >= 0).all()
    assert (np.diff(trace.topk_probs, axis=-1) <= 1e-7).all()


def test_a_callback_that_changes_the_block_is_what_is_recorded(pipe):
    mask = pipe.tokenizer.mask_token_id

    def fill_first(_pipe, _step, _timestep, kwargs):
        block_x = kwargs["block_x"]
        block_x[:, -8] = torch.where(block_x[:, -8] == mask, 5, block_x[:, -8])
        return {"block_x": block_x}

    trace = _record(pipe, "greedy", callback_on_step_end=fill_first)
    # the callback fills a block's first position when the step left it masked: the draft is
    # what the pipeline kept after the callback
    assert (trace.draft[0, :, 0] != mask).all()
    first = trace.canvas_steps(0)
    assert trace.sampled[0, first[0], 0] != 5  # the model did not pick it: the callback did
    assert (trace.draft[0, first, 0] == 5).all()
    assert trace.output_ids[0, 0] == 5


def test_routing_from_routers_found_by_type(pipe):
    from dgviz.recording.llada2_loop import routers
    from dgviz.testing import LLaDA2MoeGate

    gates = routers(pipe.model)
    assert len(gates) == pipe.model.config.num_hidden_layers
    assert all(isinstance(g, LLaDA2MoeGate) for g in gates)
    trace = _record(pipe, "sampled")
    n, k, e = len(gates), pipe.model.config.num_experts_per_tok, pipe.model.config.num_experts
    assert trace.expert_ids.shape == (1, trace.num_steps, n, trace.canvas_length, k)
    assert trace.num_experts == e
    assert trace.expert_ids.min() >= 0
    assert trace.expert_ids.max() < e
    np.testing.assert_allclose(trace.expert_weights.astype(np.float32).sum(-1), 1.0, atol=3e-3)
    assert (trace.router_entropy <= np.log(e) + 1e-2).all()
    # the recorded routes are each gate's choices for the current block (the last positions
    # of what the model reads), as a hook of our own sees them in an unrecorded run
    seen = []
    hooks = [g.register_forward_hook(lambda m, i, out: seen.append(out[0][-8:].clone()))
             for g in gates]
    try:
        pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(3), **CONFIGS["sampled"])
    finally:
        for h in hooks:
            h.remove()
    own = torch.stack(seen).view(trace.num_steps, n, 8, k).numpy()
    np.testing.assert_array_equal(trace.expert_ids[0], own)


def test_a_gate_found_under_any_attribute_name(pipe):
    from dgviz.recording.llada2_loop import routers
    from dgviz.testing import LLaDA2MoeGate, tiny_llada2_model

    class RenamedGate(LLaDA2MoeGate):  # a subclass, moved to another attribute
        pass

    model, _ = tiny_llada2_model()
    for layer in model.layers:
        layer.mlp.router_of_experts = RenamedGate(model.config)
        del layer.mlp.gate
    assert [type(g) for g in routers(model)] == [RenamedGate] * len(model.layers)


def test_no_known_router_warns_and_records_no_routing():
    from dgviz.testing import tiny_llada2_pipeline

    dense = tiny_llada2_pipeline(first_k_dense_replace=2)  # both layers dense: no MoE
    with pytest.warns(UserWarning, match="No MoE router of a known type"):
        trace = dgviz.record(dense, None, PROMPT, seed=0, gen_length=8, num_inference_steps=2)
    assert not trace.has_routing
    off = dgviz.record(dense, None, PROMPT, seed=0, routing=False, gen_length=8,
                       num_inference_steps=2)  # routing=False: no warning
    assert not off.has_routing


def test_live_steps_and_interrupt(pipe):
    events = []

    def on_step(event):
        snap = event.snapshot()
        events.append((snap.family, snap.mask_token_id, snap.states_in_progress(event.canvas)))
        if event.step == 2:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="interrupted"):
        trace = _record(pipe, "greedy", on_step=on_step)
    assert not trace.complete
    assert trace.num_steps == 3
    assert events[0][:2] == ("llada2", pipe.tokenizer.mask_token_id)
    assert (events[0][2] == MASKED).any()  # the live view shows masked positions too
    _clean(pipe)


def test_trace_file_and_views(pipe, tmp_path):
    trace = _record(pipe, "editing")
    back = dgviz.load_trace(trace.save(tmp_path / "llada2.dgtrace"))
    assert back.family == "llada2"
    assert back.mask_token_id == trace.mask_token_id
    np.testing.assert_array_equal(back.states, trace.states)
    np.testing.assert_array_equal(back.flips, trace.flips)

    from dgviz import palette, payload

    run = payload.run_payload(trace, 0)
    assert run["info"]["mask_token_id"] == trace.mask_token_id
    assert run["info"]["family"] == "llada2"
    assert len(run["palette"]["states"]) == 5
    html = trace.to_html(tmp_path / "llada2.html").read_text()
    assert "<|mask|>" not in html  # token text is escaped JSON, never raw markup

    heat = dgviz.plots.lock_in_map(trace).data[0]
    assert list(heat.colorbar.tickvals) == list(MASKED_STATES)
    assert heat.colorbar.ticktext[0] == "masked"
    assert heat.zmax == 4.5
    assert palette.STATE_COLORS[MASKED] in str(heat.colorscale)
    for figure in ("confidence_heatmap", "entropy_heatmap", "expert_load"):
        getattr(dgviz.plots, figure)(trace)
    gif = trace.to_gif(tmp_path / "llada2.gif")
    assert gif.stat().st_size > 0


def test_compare_with_diffusion_gemma_on_the_same_prompt(pipe):
    from dgviz.testing import tiny_model

    model, tok = tiny_model()
    dg = dgviz.record(model, tok, PROMPT, seed=3, max_new_tokens=16, max_denoising_steps=4)
    ll = _record(pipe, "greedy")
    assert dg.family == "diffusion_gemma"
    assert dg.mask_token_id is None
    assert "family" not in dg.meta  # DG traces as before
    assert "mask_token_id" not in dg.meta
    assert dg.state_values == UNIFORM_STATES
    comparison = dgviz.compare([dg, ll])
    summary = comparison.summary
    assert list(summary["family"]) == ["diffusion_gemma", "llada2"]
    assert list(summary["steps"]) == [dg.num_steps, ll.num_steps]
    np.testing.assert_allclose(summary["tokens_per_forward"],
                               [dg.tokens_per_forward[0], ll.tokens_per_forward[0]])
    assert comparison.labels[1].startswith("1: llada2 BlockRefinementScheduler")
    assert not comparison.labels[0].split(": ", 1)[1].startswith("llada2")
    comparison.convergence_figure()
    comparison.accepted_figure()
    comparison.widget()


def test_stats_if_there(pipe):
    trace = _record(pipe, "editing")
    if not hasattr(trace, "stats"):
        pytest.skip("Trace.stats() does not exist yet")
    trace.stats()


def test_arguments(pipe):
    with pytest.raises(ValueError, match="one prompt at a time"):
        dgviz.record(pipe, None, ["the cat", "the mat"])
    with pytest.raises(ValueError, match="blank"):
        dgviz.record(pipe, None, "  ")
    with pytest.raises(TypeError, match="scheduler"):
        dgviz.record(pipe, None, PROMPT, sampler=lambda *a: None)
    with pytest.raises(TypeError, match="unexpected keyword"):
        dgviz.record(pipe, None, PROMPT, num_inference_step=3)
    # the pipeline's own sampling top-k is sampling_top_k= (top_k= is dgviz's)
    ref = pipe(prompt=PROMPT, top_k=3, temperature=1.0, gen_length=8, num_inference_steps=2,
               generator=torch.Generator().manual_seed(1))
    trace = dgviz.record(pipe, None, PROMPT, seed=1, top_k=4, sampling_top_k=3, temperature=1.0,
                         gen_length=8, num_inference_steps=2)
    np.testing.assert_array_equal(trace.output_ids, ref.sequences.numpy())
    assert trace.topk_ids.shape[-1] == 4
    assert trace.settings["sampling_top_k"] == 3
    # ids as the prompt (one row), and a chat
    ids = pipe.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    by_ids = dgviz.record(pipe, None, ids[0].tolist(), seed=0, gen_length=8,
                          num_inference_steps=2)
    np.testing.assert_array_equal(by_ids.prompt_ids, ids.numpy())
    chat = dgviz.record(pipe, None, [{"role": "user", "content": PROMPT}], seed=3,
                        **CONFIGS["greedy"])
    np.testing.assert_array_equal(chat.output_ids, _record(pipe, "greedy").output_ids)
    _clean(pipe)
