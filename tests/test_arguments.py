"""Bad arguments to `dgviz.record` get a clear error before any model work; good ones work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dgviz
from dgviz.testing import tiny_model

FAST = {"max_new_tokens": 16, "max_denoising_steps": 2}


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


# (arguments to record besides model, tokenizer; the exception; what its message says)
BAD = {
    "misspelt setting": ({"prompt": "the cat", "max_denoising_step": 5}, TypeError,
                         r"max_denoising_step.*Did you mean 'max_denoising_steps'"),
    "unknown setting": ({"prompt": "the cat", "temprature": 0.5}, TypeError,
                        "unexpected keyword argument 'temprature'"),
    "float ids (list)": ({"prompt": [1.0, 2.0, 3.0]}, TypeError, "integers"),
    "float ids (tensor)": ({"prompt": torch.tensor([[1.0, 2.0]])}, TypeError, "integers"),
    "float ids (numpy)": ({"prompt": np.array([1.5, 2.0])}, TypeError, "integers"),
    "bool ids": ({"prompt": torch.tensor([True, False])}, TypeError, "integers"),
    "bool id in a list": ({"prompt": [1, True]}, TypeError, "integers"),
    "empty id array": ({"prompt": np.zeros((0, 3), dtype=np.int64)}, ValueError, "not empty"),
    "3-d ids": ({"prompt": torch.ones((1, 2, 3), dtype=torch.long)}, ValueError, r"\[batch"),
    "an empty row of ids": ({"prompt": [[1, 2], []]}, TypeError, "no empty row"),
    "ids out of the vocabulary": ({"prompt": [1, 2, 999]}, ValueError, "outside the model"),
    "negative ids": ({"prompt": [1, -2]}, ValueError, "outside the model"),
    "top_k True": ({"prompt": "the cat", "top_k": True}, TypeError, "top_k must be an integer"),
    "top_k 0": ({"prompt": "the cat", "top_k": 0}, ValueError, "top_k must be between 1"),
    "top_k huge": ({"prompt": "the cat", "top_k": 10**6}, ValueError, "vocabulary"),
    "top_k float": ({"prompt": "the cat", "top_k": 2.0}, TypeError, "top_k must be an integer"),
    "seed text": ({"prompt": "the cat", "seed": "abc"}, TypeError, "seed must be an integer"),
    "seed float": ({"prompt": "the cat", "seed": 1.5}, TypeError, "seed=0"),
    "seed negative": ({"prompt": "the cat", "seed": -1}, ValueError, "seed must be >= 0"),
    "on_step not callable": ({"prompt": "the cat", "on_step": 5}, TypeError, "StepEvent"),
    "routing text": ({"prompt": "the cat", "routing": "yes"}, TypeError, "True or False"),
    "sampler not callable": ({"prompt": "the cat", "sampler": 3}, TypeError,
                             "FixedRateSampler.factory"),
    "t_min text": ({"prompt": "the cat", "t_min": "cold"}, TypeError, "t_min must be a number"),
    "t_max zero": ({"prompt": "the cat", "t_max": 0}, ValueError, "t_max must be > 0"),
    "t_min nan": ({"prompt": "the cat", "t_min": float("nan")}, ValueError, "finite"),
    "steps zero": ({"prompt": "the cat", "max_denoising_steps": 0}, ValueError, ">= 1"),
    "steps float": ({"prompt": "the cat", "max_denoising_steps": 2.5}, TypeError, "integer"),
    "max_new_tokens zero": ({"prompt": "the cat", "max_new_tokens": 0}, ValueError, ">= 1"),
    "stability negative": ({"prompt": "the cat", "stability_threshold": -1}, ValueError,
                           "None turns the early stop off"),
    "confidence text": ({"prompt": "the cat", "confidence_threshold": "low"}, TypeError,
                        "number"),
    "entropy bound negative": ({"prompt": "the cat", "entropy_bound": -1.0}, ValueError, "> 0"),
    "bound twice": ({"prompt": "the cat", "entropy_bound": 0.5,
                     "sampler_config": object()}, TypeError, "not both"),
    "sampler_config wrong": ({"prompt": "the cat", "sampler_config": {"entropy_bound": 1}},
                             TypeError, "EntropyBoundSamplerConfig"),
    "blank prompt": ({"prompt": "   "}, ValueError, "blank"),
    "blank batch prompt": ({"prompt": ["the cat", " "]}, ValueError, "Batch prompt 1 is blank"),
    "prompt of the wrong type": ({"prompt": 3.5}, TypeError, "prompt must be"),
    "empty chat": ({"prompt": []}, TypeError, "empty"),
    "chat without content": ({"prompt": [{"role": "user"}]}, ValueError, "role"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_arguments_get_a_clear_error(tiny, case):
    model, tok = tiny
    kwargs, error, message = BAD[case]
    kwargs = dict(kwargs)
    prompt = kwargs.pop("prompt")
    with pytest.raises(error, match=message):
        dgviz.record(model, tok, prompt, **{**FAST, **kwargs})


@pytest.mark.parametrize("tokenizer", [42, "tok", object()], ids=["int", "str", "object"])
def test_a_tokenizer_that_is_not_one(tiny, tokenizer):
    model, _ = tiny
    with pytest.raises(TypeError, match="tokenizer must be the model's tokenizer or processor"):
        dgviz.record(model, tokenizer, "the cat", **FAST)


def test_no_model_work_happens_before_the_checks(tiny, monkeypatch):
    model, tok = tiny

    def boom(*args, **kwargs):  # pragma: no cover - must not run
        raise AssertionError("generate ran")

    monkeypatch.setattr(model, "generate", boom)
    with pytest.raises(TypeError, match="Did you mean"):
        dgviz.record(model, tok, "the cat", max_denoising_step=5)
    assert "generate" in model.__dict__  # our patch, untouched by dgviz


GOOD = {
    "numpy top_k and seed": {"top_k": np.int64(3), "seed": np.int32(1)},
    "numpy settings": {"max_denoising_steps": np.int64(2), "t_min": np.float32(0.4),
                       "t_max": np.float64(0.8)},
    "int temperatures": {"t_min": 1, "t_max": 2},
    "entropy_bound short form": {"entropy_bound": 0.5},
    "no early stop": {"stability_threshold": None, "confidence_threshold": None},
}


@pytest.mark.parametrize("case", list(GOOD), ids=list(GOOD))
def test_legitimate_arguments_work(tiny, case):
    model, tok = tiny
    trace = dgviz.record(model, tok, "the cat", **{"seed": 0, **FAST, **GOOD[case]})
    assert trace.complete
    assert trace.num_steps >= 1


def test_entropy_bound_short_form_equals_sampler_config(tiny):
    from transformers import EntropyBoundSamplerConfig

    model, tok = tiny
    short = dgviz.record(model, tok, "the cat", seed=3, entropy_bound=0.5, **FAST)
    long = dgviz.record(model, tok, "the cat", seed=3, **FAST,
                        sampler_config=EntropyBoundSamplerConfig(entropy_bound=0.5))
    assert np.array_equal(short.output_ids, long.output_ids)
    assert short.settings["entropy_bound"] == 0.5


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint32])
def test_ids_of_any_integer_width(tiny, dtype):
    model, tok = tiny
    ids = np.array([5, 6, 7], dtype=dtype)
    trace = dgviz.record(model, tok, ids, seed=0, **FAST)
    assert trace.prompt_ids.tolist() == [[5, 6, 7]]


def test_a_list_of_lists_of_ids_is_a_batch(tiny):
    model, tok = tiny
    even = dgviz.record(model, tok, [[5, 6, 7], [8, 9, 10]], seed=0, **FAST)
    assert even.batch_size == 2
    ragged = dgviz.record(model, tok, [[5, 6, 7], [8, 9]], seed=0, **FAST)
    assert ragged.prompt_ids.tolist() == [[5, 6, 7], [tok.pad_token_id, 8, 9]]


BAD_SWEEPS = {
    "schedules not a dict": ({"schedules": ["default"]}, TypeError, "schedules must be a dict"),
    "no schedule": ({"schedules": {}}, ValueError, "at least one schedule"),
    "seeds an int": ({"seeds": 3}, TypeError, "seeds must be a list"),
    "a seed of text": ({"seeds": [0, "1"]}, TypeError, "each seed must be an integer"),
    "no seed": ({"seeds": []}, ValueError, "at least one seed"),
    "score not callable": ({"score": 0.5}, TypeError, "score must be a function"),
    "max_new_tokens zero": ({"max_new_tokens": 0}, ValueError, "max_new_tokens must be >= 1"),
    "unknown reference": ({"reference": "fast"}, ValueError, "reference 'fast'"),
}


@pytest.mark.parametrize("case", list(BAD_SWEEPS), ids=list(BAD_SWEEPS))
def test_bad_sweep_arguments_get_a_clear_error(tiny, case):
    kwargs, error, match = BAD_SWEEPS[case]
    model, tok = tiny
    args = {"schedules": {"default": {}}, "seeds": [0], **kwargs}
    with pytest.raises(error, match=match):
        dgviz.sweep(model, tok, "the cat", progress=False, **args)
