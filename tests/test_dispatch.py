"""Recording models placed and typed as people run them, on CPU: ids of any integer kind and
layout, accelerate's ``cpu_offload`` / ``disk_offload`` (weights on ``meta``, moved in per
forward), bf16 / fp16 weights, a processor wrapping the tokenizer. Every recorded run must write
the same tokens as a plain ``generate`` with the same seed, on the same model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dgviz
from dgviz.recording.model_access import embedding_device
from dgviz.testing import tiny_model

GEN = {"max_new_tokens": 32, "max_denoising_steps": 4}
IDS = [[4, 5, 6, 7, 8]]


def _plain(model, ids, seed=0, **kwargs):
    torch.manual_seed(seed)
    return model.generate(ids, **{**GEN, **kwargs}).sequences[:, ids.shape[1]:].cpu().numpy()


def _same_as_generate(model, tok, prompt, ids, seed=0):
    trace = dgviz.record(model, tok, prompt, seed=seed, **GEN)
    np.testing.assert_array_equal(trace.output_ids, _plain(model, ids, seed))
    assert trace.complete
    return trace


@pytest.mark.parametrize("make", [
    lambda: torch.tensor(IDS, dtype=torch.int32),
    lambda: torch.tensor(IDS, dtype=torch.uint8),
    lambda: torch.tensor(IDS[0]),  # one row, no batch axis
    lambda: torch.tensor([IDS[0], IDS[0][::-1]]).T.contiguous().T[:1],  # a strided view
    lambda: np.array(IDS, dtype=np.int16),
], ids=["int32", "uint8", "1-d", "strided view", "numpy int16"])
def test_ids_of_any_integer_kind_and_layout(tiny, make):
    model, tok = tiny
    trace = _same_as_generate(model, tok, make(), torch.tensor(IDS))
    np.testing.assert_array_equal(trace.prompt_ids, IDS)


def test_ids_on_another_device_than_the_model_are_moved(tiny):
    """Ids are moved to the embedding's device; one on ``meta`` (no values) is refused plainly,
    not with a crash deep in generate."""
    model, tok = tiny
    with pytest.raises((ValueError, RuntimeError, NotImplementedError)):
        dgviz.record(model, tok, torch.tensor(IDS, device="meta"), seed=0, **GEN)


@pytest.fixture
def offloaded(tmp_path, request):
    """A fresh tiny model (offloading changes it in place), its tokenizer, and the same model
    not offloaded for reference."""
    accelerate = pytest.importorskip("accelerate")
    model, tok = tiny_model(seed=3)
    reference, _ = tiny_model(seed=3)
    # the decoder reads its embedding's weight directly (self-conditioning), outside the
    # embedding's forward: accelerate must load the decoder's weights as a whole, or that read
    # sees stale memory and generate itself writes different tokens from run to run
    whole = [type(model.model.decoder).__name__]
    if request.param == "cpu_offload":
        accelerate.cpu_offload(model, execution_device="cpu", preload_module_classes=whole)
    else:
        accelerate.disk_offload(model, offload_dir=str(tmp_path / "offload"),
                                execution_device="cpu", preload_module_classes=whole)
    return model, tok, reference


@pytest.mark.parametrize("offloaded", ["cpu_offload", "disk_offload"], indirect=True)
def test_accelerate_offloaded_models(offloaded):
    model, tok, reference = offloaded
    assert model.model.decoder.embed_tokens.weight.device.type == "meta"  # really offloaded
    assert embedding_device(model) == torch.device("cpu")  # accelerate's execution device
    ids = torch.tensor(IDS)
    trace = _same_as_generate(model, tok, ids, ids, seed=5)
    # offloading moves weights, it changes no value: the model run in place writes the same
    np.testing.assert_array_equal(trace.output_ids, _plain(reference, ids, seed=5))
    assert trace.expert_ids is not None  # the routers' hooks fire under accelerate's hooks
    assert trace.expert_ids.shape[2] == reference.config.text_config.num_hidden_layers


def _layers_to(model, place: str) -> dict[str, str]:
    """A device map: every decoder and encoder layer at ``place``, the rest (the tied
    embeddings and lm_head above all) on the CPU, the execution device here."""
    dmap = {"lm_head": "cpu", "model.encoder.vision_tower": "cpu",
            "model.encoder.embed_vision": "cpu"}
    for prefix in ("model.encoder.language_model", "model.decoder"):
        for name, _ in model.get_submodule(prefix).named_children():
            dmap[f"{prefix}.{name}"] = place if name == "layers" else "cpu"
    return dmap


def test_layers_offloaded_with_the_embeddings_resident(tmp_path):
    """What docs/real-model.md tells a user whose GPU is too small: from_pretrained with a
    device map that offloads the layers and keeps the embeddings on the execution device
    (here the layers go to disk and the CPU executes, as a GPU would with layers in CPU memory)."""
    pytest.importorskip("accelerate")
    from transformers import DiffusionGemmaForBlockDiffusion

    reference, tok = tiny_model(seed=3)
    reference.save_pretrained(tmp_path / "model")
    model = DiffusionGemmaForBlockDiffusion.from_pretrained(
        tmp_path / "model", device_map=_layers_to(reference, "disk"),
        offload_folder=str(tmp_path / "offload"))
    assert model.model.decoder.layers[0].experts.gate_up_proj.device.type == "meta"
    assert model.model.decoder.embed_tokens.weight.device.type == "cpu"
    ids = torch.tensor(IDS)
    trace = _same_as_generate(model, tok, ids, ids, seed=5)
    np.testing.assert_array_equal(trace.output_ids, _plain(reference, ids, seed=5))
    assert trace.expert_ids.shape[2] == reference.config.text_config.num_hidden_layers


def test_an_offloaded_embedding_is_refused_with_the_fix():
    """accelerate.cpu_offload without preloading the decoder leaves the embedding weight the
    decoder reads directly unloaded: generate itself goes wrong, so recording refuses, saying
    how to offload instead."""
    accelerate = pytest.importorskip("accelerate")
    model, tok = tiny_model(seed=3)
    accelerate.cpu_offload(model, execution_device="cpu")
    with pytest.raises(ValueError, match="embed_tokens") as error:
        dgviz.record(model, tok, torch.tensor(IDS), seed=0, **GEN)
    assert "device_map" in str(error.value)
    assert "preload_module_classes" in str(error.value)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_models(dtype):
    model, tok = tiny_model(seed=1)
    model = model.to(dtype)
    ids = torch.tensor(IDS)
    trace = _same_as_generate(model, tok, ids, ids, seed=2)
    # the reductions run in float32 whatever the model's dtype: probabilities stay in range
    assert trace.confidence.dtype == np.float32
    assert np.isfinite(trace.entropy).all()
    assert (trace.entropy >= -1e-3).all()
    assert (trace.topk_probs[..., 0] >= trace.topk_probs[..., -1]).all()
    assert np.isfinite(trace.expert_weights.astype(np.float32)).all()


class _Processor:
    """What ``AutoProcessor`` gives for DiffusionGemma, as far as recording sees it: the
    tokenizer as ``.tokenizer``, the chat template applied by the processor itself."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def apply_chat_template(self, *args, **kwargs):
        return self.tokenizer.apply_chat_template(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        return self.tokenizer(*args, **kwargs)


@pytest.mark.parametrize("prompt", ["the cat sat", [{"role": "user", "content": "the cat"}]],
                         ids=["text", "chat"])
def test_a_processor_wrapping_the_tokenizer(tiny, prompt):
    model, tok = tiny
    with_tokenizer = dgviz.record(model, tok, prompt, seed=4, **GEN)
    with_processor = dgviz.record(model, _Processor(tok), prompt, seed=4, **GEN)
    np.testing.assert_array_equal(with_processor.prompt_ids, with_tokenizer.prompt_ids)
    np.testing.assert_array_equal(with_processor.output_ids, with_tokenizer.output_ids)
    assert with_processor.token_text == with_tokenizer.token_text
    assert with_processor.text == with_tokenizer.text
    ids = torch.as_tensor(with_tokenizer.prompt_ids, dtype=torch.long)
    np.testing.assert_array_equal(with_processor.output_ids, _plain(model, ids, seed=4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("masked", [False, True], ids=["all finite", "masked -inf"])
def test_step_reductions_match_a_float64_reference(dtype, masked):
    """Confidence, entropy and top-k from the logits of any dtype, masked (-inf) entries
    included, against the same quantities in float64."""
    from dgviz.recording.collector import Collector

    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 16, 300, generator=gen) * 4).to(dtype)
    if masked:  # e.g. a top-k filter or a held position: most of a row at -inf
        logits[0, :5, 3:] = float("-inf")
        logits[1, 7, :] = float("-inf")
        logits[1, 7, 42] = 1.0  # one-hot
    collector = Collector(None, top_k=5, routing=False, on_step=None, canvas_length=16)
    collector.reduce_logits(logits)
    got = collector.pending
    ref = torch.softmax(logits.double(), -1)
    entropy = -torch.special.xlogy(ref, ref).sum(-1)
    top_p, top_i = ref.topk(5, -1)
    assert got["entropy"].dtype == got["confidence"].dtype == torch.float32
    torch.testing.assert_close(got["entropy"].double(), entropy, atol=1e-5, rtol=0)
    torch.testing.assert_close(got["topk_probs"].double(), top_p, atol=1e-6, rtol=0)
    torch.testing.assert_close(got["confidence"].double(), top_p[..., 0], atol=1e-6, rtol=0)
    # every id returned carries the probability returned beside it (among ties, bf16's many
    # and -inf's, which of the tied ids comes first is arbitrary)
    at_ids = ref.gather(-1, got["topk_ids"].long())
    torch.testing.assert_close(at_ids, top_p, atol=1e-6, rtol=0)
    distinct = (top_p[..., :-1] - top_p[..., 1:]).abs() > 1e-9
    assert torch.equal(got["topk_ids"][..., 0][distinct[..., 0]], top_i[..., 0][distinct[..., 0]])
    if masked:
        assert got["entropy"][1, 7] == 0
        assert got["confidence"][1, 7] == 1


def test_routing_kept_on_the_device_comes_back_in_place():
    """Decoder router hooks keep the probabilities; a step takes the entropy of all its layers
    at once, and the steps waiting on the device are stacked into ``[B, S, N, L, k]`` when
    copied to the host. Every value must land where the per-layer, per-step one belongs."""
    from dgviz.recording.collector import Collector, _route_hook, _router_entropy
    from dgviz.testing import tiny_tokenizer

    gen = torch.Generator().manual_seed(1)
    batch, length, layers, steps = 2, 5, 3, 4
    collector = Collector(tiny_tokenizer(60), top_k=2, routing=True, on_step=None,
                          canvas_length=length, vocab_size=60)
    hook = _route_hook(collector.decoder_routes, defer=True)
    want_ids, want_weights, want_entropy = [], [], []
    for _ in range(steps):
        per_layer = []
        for _ in range(layers):
            probs = torch.softmax(torch.randn(batch * length, 8, generator=gen) * 3, -1)
            probs[0, :2] = 0.0  # experts with probability 0 add nothing
            weights, index = probs.topk(2, -1)
            hook(None, None, (probs, weights, index))
            per_layer.append((index, weights, _router_entropy(probs)))
        want_ids.append(torch.stack([p[0] for p in per_layer]).view(layers, batch, length, 2))
        want_weights.append(torch.stack([p[1] for p in per_layer]).view(layers, batch, length, 2))
        want_entropy.append(torch.stack([p[2] for p in per_layer]).view(layers, batch, length))
        canvas = torch.randint(0, 50, (batch, length), generator=gen)
        collector.pending.update(canvas_in=canvas, sampled=canvas, draft=canvas,
                                 accepted=canvas > 25, active=torch.ones(batch, dtype=torch.bool),
                                 stop=torch.zeros(batch, dtype=torch.bool))
        collector.reduce_logits(torch.randn(batch, length, 50, generator=gen))
        collector.flush_step(0, 1.0, 0.0)
    ids = collector.stack("expert_ids", np.int64)
    assert ids.shape == (batch, steps, layers, length, 2)
    np.testing.assert_array_equal(ids, torch.stack(want_ids, 1).transpose(0, 2).numpy())
    np.testing.assert_allclose(collector.stack("expert_weights", np.float32),
                               torch.stack(want_weights, 1).transpose(0, 2).numpy(), atol=1e-3)
    entropy = collector.stack("router_entropy", np.float32)
    np.testing.assert_allclose(entropy, torch.stack(want_entropy, 1).transpose(0, 2).numpy(),
                               atol=2e-3)
    assert np.isfinite(entropy).all()


def test_token_text_from_the_kept_table_equals_decoding_each_id():
    """Steps look token text up in a table decoded once per tokenizer; it must say what
    decoding each id says, for ids past the tokenizer's own too, and follow added tokens."""
    from dgviz.recording.collector import _TEXT_TABLES
    from dgviz.recording.tokens import token_texts
    from dgviz.testing import tiny_tokenizer

    model, _ = tiny_model(vocab_size=64)
    tok = tiny_tokenizer(60)  # the model's last 4 ids have no token: sampled all the same
    trace = dgviz.record(model, tok, "the cat", seed=0, max_new_tokens=64, max_denoising_steps=6)
    assert max(trace.token_text) >= 60  # ids past the tokenizer were seen
    for i, text in trace.token_text.items():
        assert text == token_texts(tok, np.array([i]))[i], i
    assert _TEXT_TABLES[tok].size == 60
    tok.add_tokens(["zebra"])  # a new id 60: the table is decoded again
    again = dgviz.record(model, tok, "the cat", seed=0, max_new_tokens=64, max_denoising_steps=6)
    assert _TEXT_TABLES[tok].size == 61
    if 60 in again.token_text:
        assert again.token_text[60] == token_texts(tok, np.array([60]))[60]


@pytest.mark.parametrize("vocab", [64, 97, 200, 256, 319, 4096])
def test_topk_equals_torch_topk_for_any_vocabulary(vocab):
    """The padded CPU top-k (a speed work-around, its buffer kept between steps) returns what
    torch's own does on the clamped log-probabilities it is given."""
    from dgviz.recording.collector import _LOWEST, Collector

    gen = torch.Generator().manual_seed(vocab)
    collector = Collector(None, top_k=5, routing=False, on_step=None, canvas_length=16)
    for _ in range(2):
        logits = torch.randn(2, 16, vocab, generator=gen)
        logits[0, 0, : vocab - 3] = -torch.inf  # a row with fewer finite logits than k
        lp = torch.log_softmax(logits, -1).clamp(min=_LOWEST)
        got, want = collector._topk(lp, 5), lp.topk(5, dim=-1)
        torch.testing.assert_close(got[0], want[0])
        assert torch.equal(got[1][1], want[1][1])  # rows without ties: the same ids
        assert (got[1] < vocab).all()


def test_one_transfer_brings_every_dtype_back_exactly():
    """A batch of steps leaves a GPU as one buffer of bytes; every array must come back with its
    dtype, shape and values (odd sizes: each piece must stay aligned)."""
    from dgviz.recording.collector import _TORCH_DTYPES, _through_one_buffer

    gen = torch.Generator().manual_seed(3)
    tensors = {name: (torch.randn(3, 7, 5, generator=gen) * 1000).to(dtype)
                     .transpose(0, 1)  # not contiguous, like the stacked steps
               for name, dtype in _TORCH_DTYPES.items()}
    got = _through_one_buffer(tensors)
    assert got.keys() == tensors.keys()
    for name, t in tensors.items():
        assert got[name].dtype == t.numpy().dtype
        assert got[name].shape == tuple(t.shape)
        np.testing.assert_array_equal(got[name], t.numpy())
