"""Record transformers' own ``DiffusionGemmaForBlockDiffusion.generate``.

Wraps, on the model *instance* and only while recording, the private helpers the generate loop
calls:

- ``_prepare_sampler`` (the sampler's ``accept_canvas`` sees the processed logits, the canvas the
  decoder read, the sampled canvas and, after it runs, ``accepted_token_mask``),
- ``_denoising_step`` (step boundaries, the argmax draft after the stop-criterion masking),
- ``_prepare_diffusion_stopping_criteria`` (whether the adaptive stop fired),
- ``_prepare_denoiser_inputs`` / ``_finalize_canvas`` (canvas boundaries, finished rows),

plus the collector's forward hooks on every MoE router.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ..trace import Trace
from .arguments import check_generate_kwargs, check_model_inputs
from .collector import Collector, record_keeping_partial
from .model_access import embedding_device, model_facts, vocab_size
from .tokens import check_ids, check_tokenizer, encode_prompt, text_tokenizer

# Settings recorded in `Trace.settings`; all of them are `DiffusionGemmaGenerationConfig` fields.
_SETTING_NAMES = (
    "max_new_tokens",
    "max_denoising_steps",
    "t_min",
    "t_max",
    "stability_threshold",
    "confidence_threshold",
    "eos_token_id",
    "pad_token_id",
)


def record_generate(
    model: Any,
    tokenizer: Any,
    prompt: Any,
    *,
    seed: int | None,
    top_k: int,
    routing: bool,
    on_step: Callable | None,
    sampler: Callable[[Any, Any], Any] | None,
    **generate_kwargs: Any,
) -> Trace:
    """`dgviz.record` for a ``DiffusionGemmaForBlockDiffusion``; see there."""
    check_model_inputs(model, tokenizer, sampler)
    generate_kwargs = check_generate_kwargs(model, generate_kwargs)
    tok = text_tokenizer(tokenizer)
    check_tokenizer(model, tok)
    input_ids, attention_mask = encode_prompt(
        tokenizer, prompt, device=embedding_device(model),
        pad_token_id=getattr(tok, "pad_token_id", None))
    check_ids(model, input_ids)
    if attention_mask is not None:
        generate_kwargs.setdefault("attention_mask", attention_mask)
    # Recording code runs inside the decoder and sampler; torch.compile (used with static caches)
    # would try to trace it. Recording is for looking, not for speed.
    generate_kwargs.setdefault("disable_compile", True)
    generate_kwargs["return_dict_in_generate"] = True

    recorder = GenerateRecorder(model, tok, top_k=top_k, routing=routing, on_step=on_step,
                                sampler_factory=sampler)
    recorder.prompt_ids = input_ids
    recorder.seed = seed

    def generate():
        with recorder.installed():
            return model.generate(input_ids, **generate_kwargs)

    return record_keeping_partial(
        generate, lambda complete, output: recorder.finish(complete=complete, seed=seed,
                                                           output=output))


class GenerateRecorder(Collector):
    """Records transformers' generate. Installed on a model instance only inside `installed()`."""

    def __init__(self, model, tokenizer, *, top_k, routing, on_step, sampler_factory):
        super().__init__(tokenizer, top_k=top_k, routing=routing, on_step=on_step,
                         canvas_length=model.config.canvas_length,
                         vocab_size=vocab_size(model))
        self.model = model
        self.sampler_factory = sampler_factory
        self.generation_config = None
        self.sampler = None
        self.sequences: torch.Tensor | None = None  # prompt + finished canvases so far
        self.finished_sequences: torch.Tensor | None = None
        self._stop_fired: torch.Tensor | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        model = self.model
        patched = {
            "_prepare_sampler": self._wrap_prepare_sampler(model._prepare_sampler),
            "_prepare_diffusion_stopping_criteria": self._wrap_prepare_stop(
                model._prepare_diffusion_stopping_criteria
            ),
            "_prepare_denoiser_inputs": self._wrap_denoiser_inputs(model._prepare_denoiser_inputs),
            "_denoising_step": self._wrap_denoising_step(model._denoising_step),
            "_finalize_canvas": self._wrap_finalize(model._finalize_canvas),
        }
        with self.patched([(model, name, fn) for name, fn in patched.items()], model):
            yield

    def _wrap_prepare_sampler(self, original):
        @functools.wraps(original)
        def prepare_sampler(generation_config):
            self.generation_config = generation_config
            if self.sampler_factory is not None:
                sampler = self.sampler_factory(generation_config, self.model)
            else:
                sampler = original(generation_config)
            accept = sampler.accept_canvas

            def accept_canvas(current_canvas, denoiser_canvas, logits, cur_step):
                accepted = accept(current_canvas, denoiser_canvas, logits, cur_step)
                mask = getattr(sampler, "accepted_token_mask", None)
                if mask is None:  # samplers that keep no mask: accepted = took the sampled token
                    mask = (accepted == denoiser_canvas) & (accepted != current_canvas)
                self.pending.update(canvas_in=current_canvas, sampled=denoiser_canvas,
                                    accepted=mask)
                self.reduce_logits(logits)
                return accepted

            sampler.accept_canvas = accept_canvas
            self.sampler = sampler
            return sampler

        return prepare_sampler

    def _wrap_prepare_stop(self, original):
        @functools.wraps(original)
        def prepare_stop(generation_config):
            inner = original(generation_config)
            return None if inner is None else _RecordingStop(inner, self)

        return prepare_stop

    def _wrap_denoiser_inputs(self, original):
        @functools.wraps(original)
        def prepare_denoiser_inputs(*args, **kwargs):
            self.flush_encoder()
            self.canvas += 1
            return original(*args, **kwargs)

        return prepare_denoiser_inputs

    def _wrap_denoising_step(self, original):
        @functools.wraps(original)
        def denoising_step(*args, **kwargs):
            start = time.perf_counter()
            finished = kwargs["finished_denoising"].clone()
            if self.finished_sequences is not None:
                finished |= self.finished_sequences
            self._stop_fired = None
            result = original(*args, **kwargs)
            stop = self._stop_fired if self._stop_fired is not None else torch.zeros_like(finished)
            # the draft after the stop criterion froze finished rows: what generate keeps
            self.pending.update(draft=result[1], active=~finished, stop=stop)
            remaining = int(kwargs["cur_step"])
            self.flush_step(remaining, self._temperature(remaining), start)
            return result

        return denoising_step

    def _wrap_finalize(self, original):
        @functools.wraps(original)
        def finalize_canvas(*args, **kwargs):
            input_ids, finished = original(*args, **kwargs)
            self.sequences = input_ids
            self.finished_sequences = finished
            return input_ids, finished

        return finalize_canvas

    def _temperature(self, remaining: int) -> float:
        cfg = self.generation_config
        if cfg is None or cfg.t_min is None or cfg.t_max is None:
            return math.nan
        return cfg.t_min + (cfg.t_max - cfg.t_min) * remaining / cfg.max_denoising_steps

    def finish(self, *, complete: bool, seed: int | None, output: Any = None) -> Trace:
        batch, plen = self.prompt_ids.shape
        if output is not None:
            sequences = output.sequences.detach().cpu().numpy()
            tpf = output.tokens_per_forward
            tpf = tpf.detach().cpu().numpy() if tpf is not None else np.full(batch, np.nan)
        else:  # interrupted: whatever canvases were finished
            seq = self.sequences if self.sequences is not None else self.prompt_ids
            sequences = seq.detach().cpu().numpy()
            tpf = np.full(batch, np.nan)
        return self.build(output_ids=sequences[:, plen:], tokens_per_forward=tpf,
                          meta=self._meta(complete, seed))

    def _meta(self, complete, seed) -> dict[str, Any]:
        return {"complete": complete, "source": "transformers",
                "settings": {"seed": seed, **self.settings()}, **model_facts(self.model)}

    def settings(self) -> dict[str, Any]:
        cfg = self.generation_config
        settings: dict[str, Any] = {"top_k": self.top_k}
        if cfg is not None:
            for name in _SETTING_NAMES:
                settings[name] = getattr(cfg, name, None)
            sampler_cfg = getattr(cfg, "sampler_config", None)
            # the bound belongs to the default EntropyBoundSampler, not to a custom sampler
            if self.sampler_factory is None and hasattr(sampler_cfg, "entropy_bound"):
                settings["entropy_bound"] = sampler_cfg.entropy_bound
        if self.sampler is not None:
            settings["sampler"] = type(self.sampler).__name__
            describe = getattr(self.sampler, "describe", None)
            if callable(describe):
                settings.update(describe())
        return settings


class _RecordingStop:
    """Stands in for the adaptive stopping criterion to see when it fires."""

    def __init__(self, inner, recorder: GenerateRecorder):
        self.inner = inner
        self.recorder = recorder

    def __call__(self, *args, **kwargs):
        fired = self.inner(*args, **kwargs)
        self.recorder._stop_fired = fired
        return fired

    def reset(self):
        self.inner.reset()

    def __getattr__(self, name):
        return getattr(self.inner, name)
