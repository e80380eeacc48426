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
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ..trace import Trace
from .arguments import check_generate_kwargs, check_model_inputs
from .collector import Collector, record_keeping_partial
from .holds import Fork, HoldLogits, Holds, parse_hold
from .model_access import check_offload, embedding_device, model_facts, vocab_size
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
    hold: Any = None,
    fork: Fork | None = None,
    **generate_kwargs: Any,
) -> Trace:
    """`dgviz.record` for a ``DiffusionGemmaForBlockDiffusion``; see there.

    ``fork`` (from `dgviz.branch`) replays a recorded run and changes it from one step on.
    """
    check_model_inputs(model, tokenizer, sampler)
    given = sorted(generate_kwargs)  # what the caller set: a branch must be able to replay it
    generate_kwargs = check_generate_kwargs(model, generate_kwargs)
    tok = text_tokenizer(tokenizer)
    check_tokenizer(model, tok)
    check_offload(model)
    input_ids, attention_mask = encode_prompt(
        tokenizer, prompt, device=embedding_device(model),
        pad_token_id=getattr(tok, "pad_token_id", None))
    check_ids(model, input_ids)
    holds = list(fork.holds) if fork is not None else []
    if hold is not None:
        holds += parse_hold(hold, tok, model, generate_kwargs)
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
    recorder.given = given
    recorder.attention_mask = generate_kwargs.get("attention_mask")
    recorder.fork = fork
    if holds:
        recorder.holds = Holds(holds, input_ids.shape[0], model.config.canvas_length)

    def generate():
        with recorder.installed():
            recorder.started = time.perf_counter()
            return model.generate(input_ids, **generate_kwargs)

    return record_keeping_partial(
        generate, lambda complete, output: recorder.finish(complete=complete, seed=seed,
                                                           output=output))


class GenerateRecorder(Collector):
    """Records transformers' generate. Installed on a model instance only inside `installed()`."""

    # generate makes these anew at every step; a sampler's mask ("accepted") may be its state
    fresh_inputs = frozenset({"canvas_in", "sampled", "draft", "active", "stop"})

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
        self.given: list[str] = []  # generate keywords the caller set
        self.started: float | None = None  # when generate was called (wall time, stats())
        self.attention_mask: torch.Tensor | None = None  # the prompt's, kept for a branch
        self.holds: Holds | None = None
        self.fork: Fork | None = None
        self._held: tuple[torch.Tensor, torch.Tensor] | None = None  # this step's holds
        self._in_force: dict[str, Any] = {}  # settings changed mid-run so far (a branch)

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
        if self.holds is not None:
            patched["_prepare_logits_processor"] = self._wrap_logits_processor(
                model._prepare_logits_processor)
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
                if self._held is not None:  # held positions: accepted, never re-noised
                    held, tokens = self._held
                    accepted = torch.where(held, tokens, accepted)
                    if getattr(sampler, "accepted_token_mask", None) is not None:
                        sampler.accepted_token_mask = sampler.accepted_token_mask | held
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
            step = self.num_steps
            if self.fork is not None:
                for change in self.fork.changes:
                    if change["step"] == step:
                        self._change_settings(change["settings"], kwargs)
            if self.holds is not None:
                canvas = kwargs["current_canvas"]
                self._held = self.holds.at(self.canvas, step, canvas.device)
                if self._held is not None:  # the decoder reads the held tokens
                    kwargs["current_canvas"] = torch.where(self._held[0], self._held[1], canvas)
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

    def _wrap_logits_processor(self, original):
        @functools.wraps(original)
        def prepare_logits_processor(*args, **kwargs):
            processors = original(*args, **kwargs)
            processors.append(HoldLogits(lambda: self._held))  # after the temperature
            return processors

        return prepare_logits_processor

    def _change_settings(self, overrides: dict[str, Any], kwargs: dict[str, Any]) -> None:
        """Settings changed mid-run (a branch): set on the objects generate's loop reads them
        from at every step (its own copies, never the model's generation config)."""
        if "entropy_bound" in overrides:
            kwargs["sampler"].entropy_bound = overrides["entropy_bound"]
        for processor in kwargs["logits_processor"]:
            for name in ("t_min", "t_max"):
                if name in overrides and hasattr(processor, name):
                    setattr(processor, name, overrides[name])
        stop = kwargs.get("diffusion_stopping_criteria")
        stop = getattr(stop, "inner", stop)
        for name in ("stability_threshold", "confidence_threshold"):
            if name in overrides:
                setattr(stop, name, overrides[name])
        self._in_force.update(overrides)

    def _wrap_finalize(self, original):
        @functools.wraps(original)
        def finalize_canvas(*args, **kwargs):
            input_ids, finished = original(*args, **kwargs)
            self.sequences = input_ids
            self.finished_sequences = finished
            return input_ids, finished

        return finalize_canvas

    def _setting(self, name: str) -> Any:
        """A generate setting in force now (a branch's override from its fork step on)."""
        if name in self._in_force:
            return self._in_force[name]
        return getattr(self.generation_config, name, None)

    def _temperature(self, remaining: int) -> float:
        t_min, t_max = self._setting("t_min"), self._setting("t_max")
        if self.generation_config is None or t_min is None or t_max is None:
            return math.nan
        return t_min + (t_max - t_min) * remaining / self.generation_config.max_denoising_steps

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
        wall = None if self.started is None else time.perf_counter() - self.started
        meta = {"complete": complete, "source": "transformers", "run_id": uuid.uuid4().hex,
                "wall_seconds": wall,
                "settings": {"seed": seed, **self.settings()}, "generate_kwargs": self.given,
                **model_facts(self.model)}
        if self.attention_mask is not None:  # a padded prompt: a branch replays the mask
            meta["attention_mask"] = self.attention_mask.detach().cpu().int().tolist()
        if self.holds is not None:
            meta["held"] = [h.as_meta() for h in self.holds.holds]
        if self.fork is not None:
            meta["fork"] = self.fork.meta
            if self.fork.changes:
                meta["changes"] = self.fork.changes
        return meta

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
