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
from dgviz.trace import FINAL, KEPT, MASKED, MASKED_STATES, NEW, RENOISED, UNIFORM_STATES

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
    # the chat-templated prompt has 8 tokens: a 16-wide first block starts inside it
    "unaligned": {"gen_length": 24, "block_length": 16, "num_inference_steps": 4,
                  "threshold": 0.05, "editing_threshold": 0.02, "max_post_steps": 3},
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
    assert trace.settings["seed"] == 3  # kept: compare pairs runs by it
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
    length = trace.canvas_length
    prompt = trace.prompt_ids[0]
    # the whole sequence, block-aligned from 0: the first recorded block is the one the prompt
    # does not fill; in a block that starts inside the prompt, the prompt's tail comes first
    first_block = prompt.size // length
    sequence = np.concatenate([prompt, trace.output_ids[0]])
    given = prompt.size % length
    assert given == (8 if name == "unaligned" else 0)
    for c in range(trace.num_canvases):
        steps = trace.canvas_steps(c)
        first = trace.canvas_in[0, steps[0]]
        lo = (first_block + c) * length
        head = given if c == 0 else 0  # the prompt's positions in this block
        np.testing.assert_array_equal(first[:head], prompt[lo: lo + head])
        assert (first[head:] == mask).all()  # the rest of every block starts masked
        # the prompt's positions are committed and final from the first step, never flipped
        assert (trace.states[0, steps, :head] == FINAL).all()
        assert (trace.flips[0, c, :head] == 0).all()
        # the block the model read is what the pipeline kept after the step before
        for s, nxt in itertools.pairwise(steps):
            np.testing.assert_array_equal(trace.draft[0, s], trace.canvas_in[0, nxt])
        # a mask filled at a step holds the token the scheduler sampled there
        for s in steps:
            filled = (trace.canvas_in[0, s] == mask) & (trace.draft[0, s] != mask)
            np.testing.assert_array_equal(trace.draft[0, s][filled], trace.sampled[0, s][filled])
            assert (trace.states[0, s][filled] != KEPT).all()
        # the last step of a block is what the pipeline returns there
        out = sequence[lo: lo + length]
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


def test_trace_file_and_views(pipe, tmp_path, capsys):
    trace = _record(pipe, "editing")
    saved = trace.save(tmp_path / "llada2.dgtrace")
    back = dgviz.load_trace(saved)
    assert back.family == "llada2"
    assert back.mask_token_id == trace.mask_token_id
    np.testing.assert_array_equal(back.states, trace.states)
    np.testing.assert_array_equal(back.flips, trace.flips)

    from dgviz.cli import main

    assert main(["info", str(saved)]) == 0
    assert '"sampler": "BlockRefinementScheduler"' in capsys.readouterr().out
    assert main(["export", str(saved), "--html", str(tmp_path / "cli.html")]) == 0
    assert (tmp_path / "cli.html").stat().st_size > 0
    frame = trace.to_dataframe()
    assert len(frame) == trace.num_steps * trace.canvas_length
    np.testing.assert_array_equal(frame["draft"], trace.draft[0].ravel())

    from dgviz import palette, payload

    run = payload.run_payload(trace, 0)
    assert run["info"]["mask_token_id"] == trace.mask_token_id
    assert run["info"]["family"] == "llada2"
    assert run["palette"]["states"][MASKED] == palette.STATE_COLORS[MASKED]  # a colour of its own
    assert run["palette"]["states"].count(palette.STATE_COLORS[MASKED]) == 1
    html = trace.to_html(tmp_path / "llada2.html").read_text()
    assert "<|mask|>" not in html  # token text is escaped JSON, never raw markup

    heat = dgviz.plots.lock_in_map(trace).data[0]
    # one colour band per state the run has, in legend order: no band for "re-noised"
    assert list(heat.colorbar.ticktext) == [dgviz.trace.STATE_NAMES[s] for s in MASKED_STATES]
    assert heat.zmax == len(MASKED_STATES) - 0.5
    assert palette.STATE_COLORS[MASKED] in str(heat.colorscale)
    assert palette.STATE_COLORS[0] not in str(heat.colorscale)
    figures = dgviz.plots.all_figures(trace)  # every figure with its default choices
    assert {"lock_in", "accepted", "sampler", "expert_map"} <= set(figures)
    assert "encoder_routing" not in figures  # LLaDA2 has no encoder
    with pytest.raises(ValueError, match="no encoder"):
        dgviz.plots.encoder_routing(trace)
    gif = trace.to_gif(tmp_path / "llada2.gif")
    assert gif.stat().st_size > 0


def test_sampler_explainer_shows_the_schedulers_commits(pipe):
    """Masked diffusion has no entropy bound: the explainer shows the positions masked before
    the step by confidence, the committed ones apart, against the scheduler's threshold."""
    trace = _record(pipe, "editing")
    mask = trace.mask_token_id
    for step in range(trace.num_steps):
        fig = dgviz.plots.sampler_explainer(trace, step)
        committed, left = fig.data[0], fig.data[1]
        read, draft = trace.canvas_in[0, step], trace.draft[0, step]
        masked = np.flatnonzero(read == mask)
        assert sorted([*committed.customdata, *left.customdata]) == masked.tolist()
        assert set(committed.customdata) == set(masked[draft[masked] != mask])
        ranks = np.r_[committed.x, left.x].astype(int)
        conf = np.r_[committed.y, left.y][np.argsort(ranks)]
        assert (np.diff(conf) <= 0).all()  # most confident first
        title = fig.layout.title.text
        assert f"committed {len(committed.x)} of {masked.size} masked" in title
        assert f"{int((draft == mask).sum())} still masked" in title
    assert any(s.y0 == trace.settings["threshold"] for s in fig.layout.shapes)  # the threshold


def test_eos_ends_the_run_after_its_block(pipe):
    settings = {**CONFIGS["greedy"], "gen_length": 32}
    plain = pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(3), **settings)
    eos = int(plain.sequences[0, 4])  # a token the model writes in the first block
    ref = pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(3), eos_token_id=eos,
               **settings)
    trace = dgviz.record(pipe, None, PROMPT, seed=3, eos_token_id=eos, **settings)
    np.testing.assert_array_equal(trace.output_ids, ref.sequences.numpy())
    assert trace.text == ref.texts
    assert trace.settings["eos_token_id"] == eos
    assert trace.num_canvases == 1  # the pipeline stopped after the block holding the eos
    assert (trace.output_ids[0, 8:] == trace.mask_token_id).all()  # the rest never ran
    first_eos = int(np.flatnonzero(trace.output_ids[0] == eos)[0])
    # tokens per forward pass: the tokens up to the eos (as the pipeline decodes them)
    np.testing.assert_allclose(trace.tokens_per_forward, [(first_eos + 1) / trace.num_steps])


def test_lock_in_measures_count_generated_positions_only(pipe):
    from dgviz.comparison import (
        generated_positions,
        lock_fraction_curve,
        mean_final_confidence,
        steps_to_lock,
    )

    trace = _record(pipe, "unaligned")
    generated = generated_positions(trace)
    assert generated.shape == (2, 16)
    assert not generated[0, :8].any()  # the prompt's last 8 tokens open the first block
    assert generated[0, 8:].all()
    assert generated[1].all()
    # steps each canvas takes until a share of its generated positions hold their final token
    per_canvas = [np.sort(trace.lock_in[0, c][generated[c]] - trace.canvas_bounds[c, 0] + 1)
                  for c in range(2)]
    assert steps_to_lock(trace, 1.0) == np.mean([s[-1] for s in per_canvas])
    assert steps_to_lock(trace, 0.5) == np.mean([s[s.size // 2 - 1] for s in per_canvas])
    # counting the prompt's 8 positions, half of the first block would be final at its first
    # step; its generated half takes longer
    assert per_canvas[0][3] > 1
    _, fraction = lock_fraction_curve(trace)
    assert fraction[-1] == 1.0
    assert fraction[1] == (trace.lock_in[0][generated] <= 0).mean()
    last = trace.last_active_step[0]
    assert mean_final_confidence(trace) == pytest.approx(
        trace.confidence[0, last][generated].mean())
    # a DiffusionGemma-style trace (no mask token) counts every position
    aligned = _record(pipe, "greedy")
    aligned.meta.pop("mask_token_id")
    assert generated_positions(aligned).all()


CHAT = [{"role": "user", "content": PROMPT}]


def test_compare_with_diffusion_gemma_on_the_same_prompt(pipe, tmp_path):
    from dgviz.testing import tiny_model

    model, tok = tiny_model(canvas_length=8)
    dg = dgviz.record(model, tok, CHAT, seed=3, max_new_tokens=16, max_denoising_steps=4)
    ll = dgviz.record(pipe, None, CHAT, seed=3, **CONFIGS["greedy"])
    np.testing.assert_array_equal(dg.prompt_ids, ll.prompt_ids)  # the same tokens in
    assert dg.canvas_length == ll.canvas_length == 8
    assert dg.family == "diffusion_gemma"
    assert dg.mask_token_id is None
    assert "family" not in dg.meta  # DG traces as before
    assert "mask_token_id" not in dg.meta
    assert dg.state_values == UNIFORM_STATES

    comparison = dgviz.compare({"DiffusionGemma": dg, "LLaDA2": ll})
    summary = comparison.summary
    assert list(summary["family"]) == ["diffusion_gemma", "llada2"]
    assert list(summary["sampler"]) == ["EntropyBoundSampler", "BlockRefinementScheduler"]
    assert list(summary["seed"]) == [3, 3]  # paired by seed: agreement is defined
    assert summary["agreement"].notna().all()
    assert list(summary["steps"]) == [dg.num_steps, ll.num_steps]
    assert list(summary["forward_passes"]) == [int(dg.active[0].sum()), ll.num_steps]
    np.testing.assert_allclose(summary["tokens_per_forward"],
                               [dg.tokens_per_forward[0], ll.tokens_per_forward[0]])
    # lock-in: per canvas, the step after which every position holds its final token
    for t, steps in zip((dg, ll), summary["steps_to_100"], strict=True):
        by_canvas = [t.lock_in[0, c].max() - t.canvas_bounds[c, 0] + 1
                     for c in range(t.num_canvases)]
        assert steps == np.mean(by_canvas)
    comparison.convergence_figure()
    comparison.accepted_figure()
    comparison.widget()
    page = comparison.to_html(tmp_path / "both.html").read_text()
    assert '"family": "llada2"' in page or '"family":"llada2"' in page
    back = dgviz.load_comparison(comparison.save(tmp_path / "both"))
    assert [t.family for t in back.traces] == ["diffusion_gemma", "llada2"]
    assert back.traces[1].mask_token_id == ll.mask_token_id

    # labels made from the traces say which family a run comes from
    labels = dgviz.compare([dg, ll]).labels
    assert labels[1].startswith("1: llada2 BlockRefinementScheduler")
    assert not labels[0].split(": ", 1)[1].startswith("llada2")


def test_sweep_of_pipeline_settings(pipe):
    """sweep records a LLaDA2Pipeline with schedules given as its own call arguments."""
    schedules = {"4 steps": {"gen_length": 16, "num_inference_steps": 4},
                 "2 steps": {"gen_length": 16, "num_inference_steps": 2}}
    comparison = dgviz.sweep(pipe, None, CHAT, schedules=schedules, seeds=[3], progress=False)
    summary = comparison.summary
    assert list(summary["label"]) == ["4 steps", "2 steps"]
    assert set(summary["family"]) == {"llada2"}
    assert list(summary["steps"]) == [8, 4]  # two blocks, filled in 4 and in 2 steps
    ref = pipe(messages=CHAT, generator=torch.Generator().manual_seed(3), gen_length=16,
               num_inference_steps=2)
    np.testing.assert_array_equal(comparison["2 steps", 3].trace.output_ids,
                                  ref.sequences.numpy())
    # sweep's max_new_tokens is the pipeline's gen_length
    short = dgviz.sweep(pipe, None, CHAT, schedules={"2 steps": {"num_inference_steps": 2}},
                        seeds=[3], max_new_tokens=8, progress=False)
    assert short.traces[0].output_ids.shape[1] == 8


@pytest.mark.browser
def test_offline_page_shows_masked_positions(pipe, tmp_path):
    from test_browser import ARGS, CHROMIUM, _need_browser, _offline

    _need_browser()
    from playwright.sync_api import expect, sync_playwright

    trace = _record(pipe, "unaligned")
    step = int(trace.canvas_steps(1)[1])  # the second block, some positions still masked
    masked = int((trace.states[0, step] == MASKED).sum())
    assert masked > 0
    path = trace.to_html(tmp_path / "llada2.html", step=step)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(err.message))
            outside = _offline(page)
            page.goto(path.as_uri())
            w = page.locator(".dgv-root")
            expect(w.locator(".dgv-tok")).to_have_count(16, timeout=20_000)
            expect(w).to_have_attribute("data-step", str(step))
            legend = w.locator(".dgv-chip[data-state]").all_text_contents()
            assert legend == ["masked", "accepted this step", "accepted earlier", "final"]
            expect(w.locator('.dgv-tok[data-state="4"]')).to_have_count(masked)
            assert set(w.locator('.dgv-tok[data-state="4"]').all_text_contents()) == {"<|mask|>"}
            shown = w.locator(".dgv-tok").evaluate_all("els => els.map(e => +e.dataset.state)")
            assert shown == trace.states[0, step].tolist()
            assert outside == []
            assert errors == []
        finally:
            browser.close()


def test_stats_of_a_llada2_run(pipe):
    trace = _record(pipe, "editing")
    stats = trace.stats()
    assert len(stats) == 1
    row = stats.iloc[0]
    assert row["forward_passes"] == trace.forward_passes(0)
    assert 0 < row["tokens"] <= trace.output_ids.shape[1]
    assert row["tokens_per_forward"] == pytest.approx(row["tokens"] / row["forward_passes"])
    assert 0 < row["accepted_per_step"] <= row["max_accepted_per_step"] <= trace.canvas_length
    assert row["canvases"] == trace.num_canvases


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
