"""dgviz.branch and record(hold=): exact replay, edits held to the end, steps before the fork
unchanged, and clear errors."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

import dgviz
from dgviz.testing import tiny_model
from dgviz.trace import HELD

GEN = {"max_new_tokens": 32, "max_denoising_steps": 6}
ARRAYS = ("canvas_in", "sampled", "draft", "accepted", "confidence", "entropy", "topk_ids",
          "topk_probs", "active", "stop", "step_canvas", "step_remaining", "temperature",
          "expert_ids", "expert_weights", "router_entropy", "encoder_expert_ids", "output_ids")


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


def _parent(tiny, seed, **kwargs):
    model, tok = tiny
    return dgviz.record(model, tok, "the cat sat", seed=seed, **{**GEN, **kwargs})


@pytest.mark.parametrize("seed", [0, 3, 11])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_no_edit_is_the_very_same_run(tiny, seed, where):
    parent = _parent(tiny, seed)
    step = {"first": 0, "middle": parent.num_steps // 2, "last": parent.num_steps - 1}[where]
    child = dgviz.branch(*tiny, parent, step)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(child, name), getattr(parent, name), err_msg=name)
    assert child.text == parent.text
    assert child.fork["parent"] == parent.run_id
    assert child.fork["step"] == step
    assert child.run_id != parent.run_id


@pytest.mark.parametrize("seed", [0, 5])
def test_an_edit_is_read_at_the_fork_and_held_to_the_end(tiny, seed):
    parent = _parent(tiny, seed)
    canvas = 1
    lo, _ = parent.canvas_bounds[canvas]
    step = int(lo) + 2
    position, token = 3, 9
    assert parent.canvas_in[0, step, position] != token or parent.draft[0, -1, position] != token
    child = dgviz.branch(*tiny, parent, step, edits={position: token})
    # the steps before the fork are the parent's, exactly
    for name in ("canvas_in", "sampled", "draft", "accepted", "confidence", "expert_ids"):
        np.testing.assert_array_equal(getattr(child, name)[:, :step],
                                      getattr(parent, name)[:, :step], err_msg=name)
    c_lo, c_hi = child.canvas_bounds[canvas]
    assert c_lo == lo
    # from the fork to the end of its canvas: read, sampled, accepted, drafted with the token
    for s in range(step, c_hi):
        assert child.canvas_in[0, s, position] == token
        assert child.sampled[0, s, position] == token
        assert child.draft[0, s, position] == token
        assert child.accepted[0, s, position]
        assert child.confidence[0, s, position] == pytest.approx(1.0)
        assert child.entropy[0, s, position] == pytest.approx(0.0, abs=1e-6)
    assert child.final_tokens[0, canvas, position] == token
    assert child.output_ids[0, canvas * child.canvas_length + position] == token
    # shown as held from the fork on, not before
    assert (child.states[0, step:c_hi, position] == HELD).all()
    assert (child.states[0, :step, position] != HELD).all()
    assert HELD in child.state_values
    assert child.fork["edits"] == {str(position): token}


def test_text_edits_and_bad_text(tiny):
    model, tok = tiny
    parent = _parent(tiny, 0)
    child = dgviz.branch(model, tok, parent, 1, edits={0: "cat"})
    assert child.final_tokens[0, 0, 0] == tok.convert_tokens_to_ids("cat")
    with pytest.raises(ValueError, match="exactly one token"):
        dgviz.branch(model, tok, parent, 1, edits={0: "the cat"})


def test_settings_change_from_the_fork_on(tiny):
    parent = _parent(tiny, 2)
    step = 2
    child = dgviz.branch(*tiny, parent, step, entropy_bound=5.0, t_min=0.1)
    np.testing.assert_array_equal(child.draft[:, :step], parent.draft[:, :step])
    assert child.settings_at(step - 1)["entropy_bound"] == parent.settings["entropy_bound"]
    assert child.settings_at(step)["entropy_bound"] == 5.0
    # a looser bound accepts more at the fork step than the parent did
    assert child.accepted[0, step].sum() > parent.accepted[0, step].sum()
    assert child.temperature[step] < parent.temperature[step]
    assert child.sampler_explainer(step)["bound"] == 5.0
    assert child.sampler_explainer(step - 1)["bound"] == parent.settings["entropy_bound"]


def test_a_branch_of_a_branch_replays_its_parent(tiny):
    parent = _parent(tiny, 4)
    first = dgviz.branch(*tiny, parent, 1, edits={2: 7}, entropy_bound=1.0)
    again = dgviz.branch(*tiny, first, first.num_steps - 1)  # after the first fork: replay
    for name in ("canvas_in", "draft", "accepted", "confidence"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name), err_msg=name)
    assert again.fork["parent"] == first.run_id


def test_hold_from_the_start(tiny):
    model, tok = tiny
    hold = {0: 5, 17: "mat"}  # canvas 0 position 0; canvas 1 position 1
    trace = dgviz.record(model, tok, "the cat sat", seed=0, hold=hold, **GEN)
    mat = tok.convert_tokens_to_ids("mat")
    assert (trace.canvas_in[0, trace.step_canvas == 0, 0] == 5).all()
    assert (trace.draft[0, trace.step_canvas == 1, 1] == mat).all()
    assert trace.output_ids[0, 0] == 5
    assert trace.output_ids[0, 17] == mat
    assert (trace.states[0][trace.step_canvas == 0][:, 0] == HELD).all()
    assert trace.held.sum() == int((trace.step_canvas == 0).sum() + (trace.step_canvas == 1).sum())
    # the other positions follow the model's own loop: a branch replays the holds too
    child = dgviz.branch(model, tok, trace, 3)
    np.testing.assert_array_equal(child.draft, trace.draft)


def test_hold_in_a_batch_holds_every_row(tiny):
    model, tok = tiny
    trace = dgviz.record(model, tok, ["the cat", "the cat sat on the mat"], seed=1,
                         hold={2: 8}, **GEN)
    assert (trace.output_ids[:, 2] == 8).all()


def test_branch_of_a_batch_edits_one_row(tiny):
    model, tok = tiny
    parent = dgviz.record(model, tok, ["the cat", "the cat sat on the mat"], seed=1, **GEN)
    child = dgviz.branch(model, tok, parent, 2, edits={4: 6}, row=1)
    np.testing.assert_array_equal(child.draft[0], parent.draft[0])  # row 0 untouched
    assert child.final_tokens[1, 0, 4] == 6
    assert (child.draft[1, 2:int(child.canvas_bounds[0, 1]), 4] == 6).all()


BAD_BRANCHES = [
    ({"step": -1}, ValueError, "step must be between"),
    ({"step": 10**6}, ValueError, "step must be between"),
    ({"step": 1.5}, TypeError, "step must be an integer"),
    ({"step": 1, "edits": {99: 3}}, ValueError, "within the step's canvas"),
    ({"step": 1, "edits": {0: 10**6}}, ValueError, "token id"),
    ({"step": 1, "edits": [3]}, TypeError, "edits must be a dict"),
    ({"step": 1, "max_denoising_steps": 3}, TypeError, "cannot change in the middle"),
    ({"step": 1, "entropy_bnd": 0.5}, TypeError, "Did you mean 'entropy_bound'"),
    ({"step": 1, "entropy_bound": -1}, ValueError, "entropy_bound must be >"),
    ({"step": 1, "row": 3}, IndexError, "row 3 out of range"),
    ({"step": 1, "edits": {0: "dog"}}, ValueError, "not in this tokenizer's vocabulary"),
    ({"step": 1, "t_min": 0.9, "t_max": 0.1}, ValueError, "t_max >= t_min"),
    ({"step": 1, "on_step": 5}, TypeError, "on_step must be a function"),
    ({"step": 1, "sampler": lambda config, model: None}, TypeError, "without sampler="),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_BRANCHES)
def test_bad_branch_arguments(tiny, kwargs, error, match):
    parent = _parent(tiny, 0)
    with pytest.raises(error, match=match):
        dgviz.branch(*tiny, parent, **kwargs)


def test_a_run_without_a_seed_cannot_be_branched(tiny):
    model, tok = tiny
    trace = dgviz.record(model, tok, "the cat sat", **GEN)
    with pytest.raises(ValueError, match="seed="):
        dgviz.branch(model, tok, trace, 1)


def test_another_model_is_refused(tiny):
    parent = _parent(tiny, 0)
    other, tok = tiny_model(canvas_length=8)
    with pytest.raises(ValueError, match="another model"):
        dgviz.branch(other, tok, parent, 1)


def test_another_model_of_the_same_sizes_is_caught_by_its_replay(tiny):
    """Other weights, same sizes: the replay cannot equal the parent's steps, and the branch
    says so instead of passing for a continuation of the parent."""
    parent = _parent(tiny, 0)
    other, tok = tiny_model(seed=1)
    with pytest.warns(UserWarning, match="differs from the recorded run at step 0"):
        dgviz.branch(other, tok, parent, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the model that recorded it: an exact replay, no warning
        dgviz.branch(*tiny, parent, 2)


def test_an_edit_on_a_row_that_had_stopped_is_refused(tiny):
    model, tok = tiny
    parent = dgviz.record(model, tok, ["the cat", "the cat sat on the mat"], seed=1, **GEN)
    stopped = copy.deepcopy(parent)
    stopped.active[1, 3:] = False  # as when row 1's adaptive stop fired after step 2
    with pytest.raises(ValueError, match="was not denoising at step 3"):
        dgviz.branch(model, tok, stopped, 3, edits={4: 6}, row=1)
    dgviz.branch(model, tok, parent, 3, edits={4: 6}, row=1)  # still denoising there: fine


def test_bad_holds(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="positions of the generated sequence"):
        dgviz.record(model, tok, "the cat", seed=0, hold={32: 3}, **GEN)
    with pytest.raises(TypeError, match="hold must be a dict"):
        dgviz.record(model, tok, "the cat", seed=0, hold=[3], **GEN)


def test_a_held_run_saves_and_loads(tiny, tmp_path):
    model, tok = tiny
    parent = _parent(tiny, 0)
    child = dgviz.branch(model, tok, parent, 2, edits={1: 4})
    back = dgviz.load_trace(child.save(tmp_path / "b.dgtrace"))
    assert back.fork == child.fork
    np.testing.assert_array_equal(back.states, child.states)
    assert back.run_id == child.run_id


def test_hold_keeps_generate_identical_elsewhere_without_holds(tiny):
    """No hold, no fork: the recorder installs nothing extra (the plain path is unchanged)."""
    model, tok = tiny
    ids = torch.tensor([[4, 5, 6]])
    torch.manual_seed(0)
    ref = model.generate(ids, **GEN)
    trace = dgviz.record(model, tok, ids, seed=0, **GEN)
    np.testing.assert_array_equal(trace.output_ids, ref.sequences[:, 3:].numpy())


def test_views_show_held_tokens_as_their_own_state(tiny, tmp_path):
    from dgviz import palette
    from dgviz.payload import run_payload

    model, tok = tiny
    trace = dgviz.record(model, tok, "the cat sat", seed=0, hold={3: 7}, **GEN)
    heat = dgviz.plots.lock_in_map(trace).data[0]
    assert list(heat.colorbar.ticktext)[-1] == "held"
    assert palette.STATE_COLORS[HELD] in str(heat.colorscale)
    assert palette.STATE_COLORS[4] not in str(heat.colorscale)  # no band for "masked"
    assert run_payload(trace, 0)["info"]["held"] is True
    trace.to_gif(tmp_path / "held.gif")  # the GIF's palette has the held colour
