"""`dgviz.record`'s arguments, checked in one place before any model work.

Every message says what was wrong and what to pass instead. Numpy scalars are accepted wherever
a Python number is (and converted, since transformers checks ``isinstance(x, float)``).
"""

from __future__ import annotations

import difflib
import inspect
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .model_access import vocab_size

# generate settings with a type and range (others pass to transformers, which checks them)
_INT_SETTINGS = {"max_new_tokens": 1, "max_denoising_steps": 1, "max_length": 1}
_FLOAT_SETTINGS = ("t_min", "t_max")
_OPTIONAL = {"stability_threshold": ("int", 0), "confidence_threshold": ("float", 0.0)}


def as_int(name: str, value: Any, *, low: int | None = None, high: int | None = None,
           hint: str = "") -> int:
    """``value`` as a Python int (numpy integers too); bools, floats and strings refused."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer (got {value!r}){hint}.")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        span = (f"between {low} and {high}" if high is not None else f">= {low}")
        raise ValueError(f"{name} must be {span} (got {value}){hint}.")
    return value


def as_float(name: str, value: Any, *, low: float | None = None, strict: bool = False,
             hint: str = "") -> float:
    """``value`` as a finite Python float (ints and numpy numbers too)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number (got {value!r}){hint}.")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite (got {value}){hint}.")
    if low is not None and (value <= low if strict else value < low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low} (got {value}){hint}.")
    return value


def unknown_keyword(name: str, known: Iterable[str], where: str) -> TypeError:
    """A TypeError for a misspelt keyword, with a "did you mean" when one is close."""
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    guess = f" Did you mean {close[0]!r}?" if close else ""
    return TypeError(f"{where} got an unexpected keyword argument {name!r}.{guess} "
                     f"It takes: {', '.join(known)}.")


def check_common(*, seed: Any, top_k: Any, routing: Any, on_step: Any, vocab: int) -> tuple:
    """The arguments every recording path shares; returns them normalised."""
    if seed is not None:
        seed = as_int("seed", seed, low=0, hint=": the seed makes a run replayable, e.g. seed=0")
    top_k = as_int("top_k", top_k, low=1, high=vocab,
                   hint=" (alternatives kept per position and step; the vocabulary's size at most)")
    if not isinstance(routing, bool | np.bool_):
        raise TypeError(f"routing must be True or False (got {routing!r}).")
    check_on_step(on_step)
    return seed, top_k, bool(routing), on_step


def check_on_step(on_step: Any) -> None:
    if on_step is not None and not callable(on_step):
        raise TypeError(f"on_step must be a function taking a dgviz.StepEvent (got {on_step!r}).")


def generate_keywords(model: Any) -> set[str]:
    """Keywords ``model.generate`` understands: generation-config fields, its own parameters,
    and the model's forward inputs (``pixel_values``, ``attention_mask``, ...)."""
    from transformers import DiffusionGemmaGenerationConfig

    names = {k for k in vars(DiffusionGemmaGenerationConfig()) if not k.startswith("_")}
    functions = [type(model).generate, type(model).forward]
    inner = getattr(model, "model", None)
    for module in (inner, getattr(inner, "encoder", None), getattr(inner, "decoder", None)):
        if module is not None:
            functions.append(type(module).forward)
    for function in functions:
        names |= {p.name for p in inspect.signature(function).parameters.values()
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return names - {"self", "input_ids", "return_dict_in_generate"}


def check_generate_kwargs(model: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Settings for ``model.generate``: known names, right types and ranges.

    ``entropy_bound=x`` is accepted as a short form of
    ``sampler_config=EntropyBoundSamplerConfig(entropy_bound=x)``.
    """
    known = generate_keywords(model) | {"entropy_bound"}
    out = dict(kwargs)
    for name in out:
        if name not in known:
            raise unknown_keyword(name, known, "dgviz.record()")
    for name, low in _INT_SETTINGS.items():
        if out.get(name) is not None:
            out[name] = as_int(name, out[name], low=low)
    for name in _FLOAT_SETTINGS:
        if out.get(name) is not None:
            out[name] = as_float(name, out[name], low=0.0, strict=True,
                                 hint=" (a sampling temperature)")
    for name, (kind, low) in _OPTIONAL.items():
        if out.get(name) is not None:
            convert = as_int if kind == "int" else as_float
            out[name] = convert(name, out[name], low=low, hint=" (None turns the early stop off)")
    if "entropy_bound" in out:
        if out.get("sampler_config") is not None:
            raise TypeError("Give entropy_bound= or sampler_config=, not both.")
        from transformers import EntropyBoundSamplerConfig

        bound = as_float("entropy_bound", out.pop("entropy_bound"), low=0.0, strict=True)
        out["sampler_config"] = EntropyBoundSamplerConfig(entropy_bound=bound)
    config = out.get("sampler_config")
    if config is not None and not hasattr(config, "entropy_bound"):
        raise TypeError("sampler_config must be a transformers EntropyBoundSamplerConfig "
                        f"(got {type(config).__name__}); for another acceptance rule pass "
                        "sampler= (see dgviz.schedules).")
    return out


def check_model_inputs(model: Any, tokenizer: Any, sampler: Any) -> None:
    """The model/tokenizer pair and the custom sampler of the transformers path."""
    if sampler is not None and not callable(sampler):
        raise TypeError(f"sampler must be a callable sampler(generation_config, model) "
                        f"(got {sampler!r}); see dgviz.schedules.FixedRateSampler.factory.")
    if tokenizer is None:
        raise TypeError(
            "dgviz.record needs the model's tokenizer (or processor) to read the prompt and to "
            "show token text: record(model, tokenizer, prompt).")
    inner = getattr(tokenizer, "tokenizer", tokenizer)
    if not all(callable(getattr(inner, name, None))
               for name in ("decode", "convert_ids_to_tokens")):
        raise TypeError(
            f"tokenizer must be the model's tokenizer or processor (got {type(tokenizer).__name__}"
            "); load it with AutoTokenizer.from_pretrained(...) or AutoProcessor.from_pretrained("
            "...) from the model's checkpoint.")


def check_pipeline_kwargs(pipe: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords for a diffusers pipeline's ``__call__``: known names, right types."""
    params = inspect.signature(type(pipe).__call__).parameters
    known = {p.name for p in params.values()
             if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self", "prompt", "messages"}
    out = dict(kwargs)
    for name in out:
        if name not in known:
            raise unknown_keyword(name, known, "dgviz.record() of a diffusers pipeline")
    for name in ("num_inference_steps", "gen_length"):
        if out.get(name) is not None:
            out[name] = as_int(name, out[name], low=1)
    return out


def vocabulary_of(model_or_pipe: Any) -> int:
    model = getattr(model_or_pipe, "model", None) if hasattr(model_or_pipe, "scheduler") else None
    return vocab_size(model if model is not None else model_or_pipe)

