"""dgviz.record on tiny DiffusionGemma models: faithful, invariant-respecting, clean."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import dgviz
from dgviz.testing import tiny_model


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


def _reference(model, ids, seed, **kwargs):
    torch.manual_seed(seed)
    return model.generate(ids, **kwargs)


CONFIGS = [
    # (model kwargs, generate kwargs)
    ({}, {"max_new_tokens": 48, "max_denoising_steps": 6}),
    ({"canvas_length": 8, "top_k_experts": 1}, {"max_new_tokens": 20, "max_denoising_steps": 4}),
    ({"canvas_length": 24, "num_experts": 4, "num_layers": 3},
     {"max_new_tokens": 24, "max_denoising_steps": 10, "t_min": 0.2, "t_max": 1.5}),
]


@pytest.mark.parametrize(("model_kwargs", "gen_kwargs"), CONFIGS)
@pytest.mark.parametrize("seed", [0, 7])
def test_output_equals_unrecorded_generate(model_kwargs, gen_kwargs, seed):
    model, tok = tiny_model(**model_kwargs)
    ids = torch.tensor([[4, 5, 6, 7, 8]])
    ref = _reference(model, ids, seed, **gen_kwargs)
    trace = dgviz.record(model, tok, ids, seed=seed, **gen_kwargs)
    np.testing.assert_array_equal(trace.output_ids, ref.sequences[:, ids.shape[1]:].numpy())
    np.testing.assert_allclose(trace.tokens_per_forward, ref.tokens_per_forward.numpy())
    assert trace.complete
    n_canvases = -(-gen_kwargs["max_new_tokens"] // model.config.canvas_length)
    assert trace.num_canvases == n_canvases
    assert trace.num_steps == n_canvases * gen_kwargs["max_denoising_steps"]


def test_batch_rows_are_recorded_and_match(tiny):
    model, tok = tiny
    ids = torch.tensor([[4, 5, 6, 7], [9, 10, 11, 12], [3, 3, 4, 4]])
    kwargs = {"max_new_tokens": 32, "max_denoising_steps": 5}
    ref = _reference(model, ids, 3, **kwargs)
    trace = dgviz.record(model, tok, ids, seed=3, **kwargs)
    assert trace.batch_size == 3
    np.testing.assert_array_equal(trace.output_ids, ref.sequences[:, 4:].numpy())
    row = trace.row(2)
    assert row.batch_size == 1
    np.testing.assert_array_equal(row.output_ids[0], trace.output_ids[2])
    assert row.text == [trace.text[2]]


def test_batch_of_strings_is_left_padded(tiny):
    model, tok = tiny
    trace = dgviz.record(model, tok, ["the cat", "the cat sat on the mat"], seed=0,
                         max_new_tokens=16, max_denoising_steps=3)
    assert trace.prompt_ids.shape == (2, 6)
    assert trace.prompt_ids[0, 0] == tok.pad_token_id


def test_invariants(tiny):
    model, tok = tiny
    trace = dgviz.record(model, tok, "the cat sat on the mat", seed=1, max_new_tokens=48,
                         max_denoising_steps=8)
    # confidence is a probability, entropy non-negative, top-k sorted and led by the confidence
    assert (trace.confidence > 0).all()
    assert (trace.confidence <= 1).all()
    assert (trace.entropy >= 0).all()
    # (top-k probabilities are stored as float16: 3 significant digits)
    np.testing.assert_allclose(trace.topk_probs[..., 0], trace.confidence, rtol=1e-3)
    assert (np.diff(trace.topk_probs, axis=-1) <= 0).all()
    # the draft is the argmax: the top-1 alternative
    np.testing.assert_array_equal(trace.draft, trace.topk_ids[..., 0])
    # accepted positions hold the sampled token in the next step's canvas; the rest was re-noised
    for c in range(trace.num_canvases):
        steps = trace.canvas_steps(c)
        for s, nxt in itertools.pairwise(steps):
            acc = trace.accepted[0, s]
            np.testing.assert_array_equal(trace.canvas_in[0, nxt][acc], trace.sampled[0, s][acc])
    # each canvas's final draft is the output
    flat_final = trace.final_tokens[0].reshape(-1)
    np.testing.assert_array_equal(flat_final[: trace.output_ids.shape[1]], trace.output_ids[0])
    # lock-in happens within its canvas, no later than the last step
    for c in range(trace.num_canvases):
        steps = trace.canvas_steps(c)
        assert (trace.lock_in[0, c] >= steps[0]).all()
        assert (trace.lock_in[0, c] <= steps[-1]).all()
    # routing: valid expert ids, normalised weights' shape, entropy bounded by log(E)
    assert trace.has_routing
    assert trace.expert_ids.min() >= 0
    assert trace.expert_ids.max() < trace.num_experts
    assert trace.expert_ids.shape == (1, trace.num_steps, 2, 16, 2)
    assert (trace.router_entropy >= 0).all()
    assert (trace.router_entropy <= np.log(trace.num_experts) + 1e-2).all()
    encoded = trace.prompt_ids.shape[1] + 16 * (trace.num_canvases - 1)
    assert trace.encoder_expert_ids.shape[1] == encoded
    # temperature follows transformers' linear schedule, counted down
    t_min, t_max, n = 0.4, 0.8, 8
    expected = t_min + (t_max - t_min) * trace.step_remaining / n
    np.testing.assert_allclose(trace.temperature, expected, rtol=1e-6)
    # token text covers every id shown
    for name in ("canvas_in", "sampled", "draft", "topk_ids"):
        assert set(np.unique(getattr(trace, name)).tolist()) <= set(trace.token_text)


def test_entropy_bound_rule_reproduced(tiny):
    """The recorded entropies and acceptances obey transformers' EntropyBoundSampler rule."""
    model, tok = tiny
    trace = dgviz.record(model, tok, "the cat", seed=4, max_new_tokens=16, max_denoising_steps=6,
                         sampler_config=_bound(3.0))
    for s in range(trace.num_steps):
        ex = trace.sampler_explainer(s)
        expected = ex["criterion"] <= ex["bound"] + 1e-4
        # ties at the bound are decided in float32 on the model's side
        agree = expected == ex["accepted"]
        assert agree.mean() >= 0.9, (s, ex)
        assert ex["accepted"].sum() >= 1  # the lowest-entropy token is always accepted


def _bound(value):
    from transformers import EntropyBoundSamplerConfig

    return EntropyBoundSamplerConfig(entropy_bound=value)


def test_adaptive_stop_is_recorded(tiny):
    model, tok = tiny
    # a huge confidence threshold and stability 0 make the stop fire at once
    trace = dgviz.record(model, tok, "the cat", seed=0, max_new_tokens=32, max_denoising_steps=6,
                         stability_threshold=0, confidence_threshold=100.0)
    assert trace.num_steps == 2  # one step per canvas
    assert trace.stop.all()
    assert trace.settings["confidence_threshold"] == 100.0


def _spy_on_temperature(monkeypatch) -> list[tuple[int, float]]:
    """Patch transformers' LinearTemperatureScheduleLogitsProcessor to log, per call, the step
    count it was given and the temperature it really divided the logits by (measured from its
    output, not recomputed from a formula)."""
    from transformers import LinearTemperatureScheduleLogitsProcessor as Processor

    calls: list[tuple[int, float]] = []
    original = Processor.__call__

    def spy(self, input_ids, scores, cur_step):
        out = original(self, input_ids, scores, cur_step)
        s, o = scores.double(), out.double()
        calls.append((int(cur_step), float((s * o).sum() / (o * o).sum())))  # scores = t * out
        return out

    monkeypatch.setattr(Processor, "__call__", spy)
    return calls


def test_temperature_and_step_count_are_what_transformers_used(tiny, monkeypatch):
    """`Trace.step_remaining` / `Trace.temperature` label each step with the count and the
    temperature transformers' processor used there: several canvases, an early stop, a branch
    whose temperatures change at the fork. (transformers counts N..1, so the last possible step
    runs at t_min + (t_max - t_min) / N: t_min itself is never used.)"""
    model, tok = tiny
    calls = _spy_on_temperature(monkeypatch)
    n = 8
    trace = dgviz.record(model, tok, "the cat sat", seed=0, max_new_tokens=48,
                         max_denoising_steps=n, t_min=0.3, t_max=1.1)
    assert trace.num_canvases == 3
    assert [c[0] for c in calls] == trace.step_remaining.tolist()
    np.testing.assert_allclose([c[1] for c in calls], trace.temperature, rtol=1e-5)
    np.testing.assert_array_equal(trace.step_remaining[: n], np.arange(n, 0, -1))
    assert trace.temperature[0] == pytest.approx(1.1)
    assert trace.temperature[n - 1] == pytest.approx(0.3 + 0.8 / n)  # not t_min

    calls.clear()  # an early stop: the labels of the steps that ran
    stopped = dgviz.record(model, tok, "the cat", seed=0, max_new_tokens=16,
                           max_denoising_steps=6, stability_threshold=0,
                           confidence_threshold=100.0)
    assert stopped.num_steps == 1
    assert calls == [(6, pytest.approx(float(stopped.temperature[0]), rel=1e-5))]

    calls.clear()  # a branch changes the temperatures from its fork on
    child = dgviz.branch(model, tok, trace, 3, t_min=0.1, t_max=0.5)
    assert [c[0] for c in calls] == child.step_remaining.tolist()
    np.testing.assert_allclose([c[1] for c in calls], child.temperature, rtol=1e-5)
    assert child.temperature[3] == pytest.approx(0.1 + 0.4 * 5 / n)


def test_chat_prompt_uses_chat_template(tiny):
    model, tok = tiny
    chat = [{"role": "user", "content": "the cat"}]
    trace = dgviz.record(model, tok, chat, seed=0, max_new_tokens=16, max_denoising_steps=2)
    expected = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    if not isinstance(expected, list):  # a BatchEncoding in transformers 5
        expected = expected["input_ids"]
    assert trace.prompt_ids[0].tolist() == list(expected)


def test_on_step_streams_every_step(tiny):
    model, tok = tiny
    events, snapshots = [], []

    def on_step(event):
        events.append(event)
        snapshots.append(event.snapshot())

    trace = dgviz.record(model, tok, "the cat", seed=0, max_new_tokens=32, max_denoising_steps=4,
                         on_step=on_step)
    assert [e.step for e in events] == list(range(trace.num_steps))
    # each snapshot is the final trace's steps so far, built the same way
    for n, snap in enumerate(snapshots, start=1):
        assert not snap.complete
        assert snap.num_steps == n
        np.testing.assert_array_equal(snap.draft, trace.draft[:, :n])
        np.testing.assert_array_equal(snap.step_remaining, trace.step_remaining[:n])
        assert snap.settings == {k: v for k, v in trace.settings.items() if k != "seed"}
        assert all(trace.token_text[i] == text for i, text in snap.token_text.items())
    assert [e.canvas for e in events] == trace.step_canvas.tolist()
    assert events[0].settings["entropy_bound"] == trace.settings["entropy_bound"] == 0.1
    np.testing.assert_array_equal(events[-1].arrays["draft"], trace.draft[:, -1])
    seen = {}
    for e in events:
        seen.update(e.new_token_text)
    assert set(np.unique(trace.canvas_in).tolist()) <= set(seen)


def test_steps_copied_in_batches_equal_steps_copied_one_by_one(tiny):
    """Unwatched, steps wait on the model's device and are copied to the host in batches; a
    watched run (on_step) copies every step. Over more steps than one batch, with a batch of
    two rows, both must give the same trace."""
    from dgviz.recording.collector import _STEPS_PER_COPY

    model, tok = tiny
    kwargs = {"seed": 5, "max_new_tokens": 32, "max_denoising_steps": 20,  # no early stop:
              "stability_threshold": None, "confidence_threshold": None}  # 20 steps a canvas
    prompts = ["the cat", "a dog ran"]
    batched = dgviz.record(model, tok, prompts, **kwargs)
    watched = dgviz.record(model, tok, prompts, on_step=lambda event: None, **kwargs)
    assert batched.num_steps > _STEPS_PER_COPY
    for name, value in vars(batched).items():
        if isinstance(value, np.ndarray) and name != "step_seconds":
            np.testing.assert_array_equal(value, getattr(watched, name), err_msg=name)
    assert batched.token_text == watched.token_text


def test_interrupt_returns_partial_trace_and_cleans_up(tiny):
    model, tok = tiny

    def stop_at_third(event):
        if event.step == 2:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="interrupted after 3 steps"):
        trace = dgviz.record(model, tok, "the cat", seed=0, max_new_tokens=32,
                             max_denoising_steps=4, on_step=stop_at_third)
    assert not trace.complete
    assert trace.num_steps == 3
    assert trace.output_ids.shape == (1, 0)  # no canvas was finished
    _assert_clean(model)


def test_error_mid_run_attaches_partial_trace_and_cleans_up(tiny):
    model, tok = tiny

    def boom(event):
        if event.step == 1:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom") as info:
        dgviz.record(model, tok, "the cat", seed=0, max_new_tokens=32, max_denoising_steps=4,
                     on_step=boom)
    assert info.value.partial_trace.num_steps == 2
    _assert_clean(model)
    # the model behaves exactly as before
    ids = torch.tensor([[4, 5]])
    a = _reference(model, ids, 5, max_new_tokens=16, max_denoising_steps=3).sequences
    b = _reference(model, ids, 5, max_new_tokens=16, max_denoising_steps=3).sequences
    assert torch.equal(a, b)


def _assert_clean(model):
    leftovers = [k for k in model.__dict__ if k.startswith(("_prepare", "_denoising", "_finalize"))]
    assert leftovers == []
    hooks = [m for m in model.modules() if m._forward_hooks]
    assert hooks == []


def test_routing_can_be_skipped(tiny):
    model, tok = tiny
    trace = dgviz.record(model, tok, "the cat", seed=0, max_new_tokens=16, max_denoising_steps=2,
                         routing=False)
    assert not trace.has_routing
    assert trace.encoder_expert_ids is None


# ------------------------------------------------------------------------------- clear errors
def test_rejects_a_model_that_is_not_diffusion_gemma(tiny):
    _, tok = tiny
    with pytest.raises(TypeError, match="DiffusionGemmaForBlockDiffusion"):
        dgviz.record(torch.nn.Linear(2, 2), tok, "the cat")


def test_rejects_a_tokenizer_that_does_not_fit(tiny):
    model, _ = tiny
    from dgviz.testing import tiny_tokenizer

    with pytest.raises(ValueError, match="do not belong together"):
        dgviz.record(model, tiny_tokenizer(vocab_size=500), "the cat")


@pytest.mark.parametrize("prompt", ["", [], torch.zeros((1, 0), dtype=torch.long)])
def test_rejects_empty_prompts(tiny, prompt):
    model, tok = tiny
    with pytest.raises((ValueError, TypeError), match=r"empty|blank|zero tokens"):
        dgviz.record(model, tok, prompt)


def test_rejects_out_of_vocabulary_ids(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        dgviz.record(model, tok, [1, 2, 999])


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_rejects_bad_step_counts(tiny, steps):
    model, tok = tiny
    with pytest.raises((ValueError, TypeError), match="max_denoising_steps must be"):
        dgviz.record(model, tok, "the cat", max_denoising_steps=steps)


def test_rejects_missing_tokenizer(tiny):
    model, _ = tiny
    with pytest.raises(TypeError, match="needs the model's tokenizer"):
        dgviz.record(model, None, "the cat")


def _metaspace_tokenizer():
    """A sentencepiece-style tokenizer (▁ word starts, byte fallback), built in code."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<pad>", "<eos>", "<bos>", "<unk>", "▁the", "▁cat", "s", "▁", "at", "<0x0A>",
              "<0xE2>", "<0x82>", "<0xAC>", "é", "▁naïve"]
    vocab = [(p, -float(i)) for i, p in enumerate(pieces)]
    backend = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                   eos_token="<eos>", bos_token="<bos>", unk_token="<unk>")


@pytest.mark.parametrize("make", ["tiny", "demo", "metaspace"])
def test_token_text_in_one_call_equals_one_decode_per_id(make):
    from dgviz.demo.vocab import build_tokenizer
    from dgviz.recording.tokens import token_texts
    from dgviz.testing import tiny_tokenizer

    tok = {"tiny": lambda: tiny_tokenizer(64), "demo": build_tokenizer,
           "metaspace": _metaspace_tokenizer}[make]()
    ids = np.arange(len(tok))
    batched = token_texts(tok, ids)
    for i in ids:
        piece = tok.convert_ids_to_tokens(int(i))
        one = tok.decode([int(i)], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if piece[:1] == "▁" and not one.startswith(" "):
            one = " " + one
        assert batched[int(i)] == one, (int(i), piece)
    if make == "metaspace":
        assert batched[4] == " the"  # the word start keeps its space
