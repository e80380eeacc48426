"""Threads, interrupts anywhere, long live runs: nothing corrupted, nothing lost, nothing left."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

import dgviz
from dgviz.payload import run_payload
from dgviz.recording.model_access import decoder_routers, encoder_routers
from dgviz.testing import tiny_model

RUN = {"max_new_tokens": 32, "max_denoising_steps": 4}
WRAPPED = ("_prepare_sampler", "_prepare_diffusion_stopping_criteria", "_prepare_denoiser_inputs",
           "_denoising_step", "_finalize_canvas")


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=1)


def assert_clean(model):
    """No wrapper on the instance, no hook on any router, and plain generate still works."""
    left = [name for name in WRAPPED if name in model.__dict__]
    assert not left, f"wrappers left on the model: {left}"
    for router in (*decoder_routers(model), *encoder_routers(model)):
        assert not router._forward_hooks, "a router hook was left behind"


def test_two_threads_recording_one_model_each_get_their_seeds_run(tiny):
    model, tok = tiny
    seeds = list(range(8))
    alone = {s: dgviz.record(model, tok, "the cat sat", seed=s, **RUN).output_ids for s in seeds}
    results, errors = {}, []

    def work(mine):
        try:
            for s in mine:
                results[s] = dgviz.record(model, tok, "the cat sat", seed=s, **RUN).output_ids
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(seeds[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert sorted(results) == seeds
    for s in seeds:
        np.testing.assert_array_equal(results[s], alone[s])
    assert_clean(model)
    torch.manual_seed(0)
    model.generate(tok("the cat", return_tensors="pt")["input_ids"], **RUN)  # no dead recorder


def test_recording_the_same_model_from_inside_its_own_recording_is_refused(tiny):
    model, tok = tiny

    def again(event):
        dgviz.record(model, tok, "the cat", seed=0, **RUN)

    with pytest.raises(RuntimeError, match="already recording") as info:
        dgviz.record(model, tok, "the cat sat", seed=0, on_step=again, **RUN)
    assert info.value.partial_trace.num_steps == 1  # the steps before it are kept
    assert_clean(model)


def _interrupting_hook(after: int):
    calls = [0]

    def hook(*_args):
        calls[0] += 1
        if calls[0] == after:
            raise KeyboardInterrupt

    return hook


def _modules(model):
    """Where a Ctrl-C can land: encoder and decoder layers, routers, the head."""
    encoder = model.model.encoder
    encoder_layers = getattr(encoder, "language_model", encoder).layers
    return {
        "encoder layer": encoder_layers[0],
        "encoder router": encoder_routers(model)[-1],
        "decoder layer": model.model.decoder.layers[-1],
        "decoder router": decoder_routers(model)[0],
        "lm head": model.lm_head,
    }


def _check_partial(trace, tmp_path):
    assert isinstance(trace, dgviz.Trace)
    assert not trace.complete
    path = trace.save(tmp_path / "partial.dgtrace")
    back = dgviz.load_trace(path)
    assert back.num_steps == trace.num_steps
    if trace.num_steps:
        trace.to_html(tmp_path / "partial.html")
        run_payload(trace, 0)
        assert len(trace.to_dataframe()) == trace.num_steps * trace.canvas_length


@pytest.mark.parametrize("where", ["encoder layer", "encoder router", "decoder layer",
                                   "decoder router", "lm head"])
def test_ctrl_c_anywhere_keeps_the_partial_trace(tiny, tmp_path, where):
    model, tok = tiny
    module = _modules(model)[where]
    # every call of this module in a 2-canvas run, the first and the last included
    probe = [0]
    handle = module.register_forward_hook(lambda *a: probe.__setitem__(0, probe[0] + 1))
    dgviz.record(model, tok, "the cat sat", seed=0, **RUN)
    handle.remove()
    total = probe[0]
    assert total >= 2
    for after in sorted({1, 2, total // 2, total - 1, total}):
        handle = module.register_forward_hook(_interrupting_hook(after))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trace = dgviz.record(model, tok, "the cat sat", seed=0, **RUN)
        finally:
            handle.remove()
        _check_partial(trace, tmp_path)
        assert_clean(model)


@pytest.mark.parametrize("step", [0, 1, 5, 7])
def test_ctrl_c_from_on_step_keeps_every_step_so_far(tiny, tmp_path, step):
    model, tok = tiny

    def stop(event):
        if event.step == step:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="interrupted"):
        trace = dgviz.record(model, tok, "the cat sat", seed=0, on_step=stop, **RUN)
    assert trace.num_steps == step + 1
    _check_partial(trace, tmp_path)
    assert_clean(model)


def test_live_snapshots_are_views_of_the_steps_so_far(tiny):
    model, tok = tiny
    seen = []

    def look(event):
        snap = event.snapshot()
        seen.append((snap.num_steps, snap.draft[0, -1].copy(), event.arrays["draft"][0].copy()))

    trace = dgviz.record(model, tok, "the cat sat", seed=0, on_step=look, **RUN)
    assert [n for n, _, _ in seen] == list(range(1, trace.num_steps + 1))
    for n, last, arrays in seen:
        np.testing.assert_array_equal(last, arrays)
        np.testing.assert_array_equal(last, trace.draft[0, n - 1])
