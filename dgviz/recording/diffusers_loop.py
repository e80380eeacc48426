"""Record diffusers' ``DiffusionGemmaPipeline.__call__`` (any scheduler) into the same Trace.

Like `dgviz.record` this runs the library's own loop and only wraps, on the pipeline instance and
only while recording, ``_prepare_inputs`` (the prompt ids), ``scheduler.step`` (each step's
canvas, sampled tokens, committed mask and logits) and ``scheduler.step_correct`` (corrector
sweeps count as forward passes), plus the MoE router hooks shared with `dgviz.record`.

Differences from the transformers path, all from how the pipeline works:

- the pipeline's output is its canvas, not an argmax draft, so ``Trace.draft`` holds the canvas
  the pipeline kept after each step (the next step's input; for a canvas's last step, the
  canvas it appended to the output);
- ``accepted`` is the scheduler's committed mask (``accepted_index``, or ``transfer_index`` |
  ``editing_transfer_index``); ancestral DDIM has none, so it is "took the predicted token";
- confidence, entropy and top-k come from the logits the scheduler sampled from (its
  ``pred_logits``: temperature-scaled for `EntropyBoundScheduler`, raw for the others);
- one prompt at a time: the pipeline does not expose which batch rows stopped early.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from typing import Any

import numpy as np
import torch

from ..trace import Trace
from .arguments import check_pipeline_kwargs
from .collector import Collector, record_keeping_partial
from .model_access import check_offload, decoder_routers, embedding_device, model_facts, vocab_size
from .tokens import text_tokenizer


def record_pipeline(
    pipe: Any,
    prompt: Any,
    *,
    seed: int | None,
    top_k: int,
    routing: bool,
    on_step: Any,
    **call_kwargs: Any,
) -> Trace:
    """`dgviz.record` for a diffusers ``DiffusionGemmaPipeline``; see there."""
    problem = diffusers_incompatibility()
    if problem is not None:
        raise RuntimeError(f"Cannot record this pipeline: {problem}.")
    call_kwargs = check_pipeline_kwargs(pipe, call_kwargs)
    if isinstance(prompt, str):
        if not prompt:
            raise ValueError("The prompt is empty: give some text or a chat.")
        call_kwargs["prompt"] = prompt
    elif isinstance(prompt, list | tuple) and prompt and all(isinstance(m, dict) for m in prompt):
        call_kwargs["messages"] = list(prompt)
    elif (isinstance(prompt, list | tuple) and len(prompt) > 1
          and all(isinstance(p, str) for p in prompt)):
        raise ValueError(
            "Recording a diffusers pipeline takes one prompt at a time (the pipeline does not say "
            "which batch rows stopped early). Record each prompt, or use the transformers model "
            "(pipe.model) for a batch."
        )
    else:
        raise TypeError(
            "A diffusers DiffusionGemmaPipeline takes text or a chat (list of role/content "
            f"messages) as its prompt, got {type(prompt).__name__}."
        )
    check_offload(pipe.model)
    if seed is not None:
        device = embedding_device(pipe.model)
        call_kwargs.setdefault("generator", torch.Generator(device=device).manual_seed(seed))

    recorder = _PipelineRecorder(pipe, top_k=top_k, routing=routing, on_step=on_step)
    recorder.seed = seed

    def call():
        with recorder.installed():
            return pipe(**call_kwargs)

    return record_keeping_partial(
        call, lambda complete, output: recorder.finish(complete=complete, seed=seed,
                                                       call_kwargs=call_kwargs, output=output))


class _PipelineRecorder(Collector):
    def __init__(self, pipe, *, top_k, routing, on_step):
        model = pipe.model
        super().__init__(text_tokenizer(pipe.processor), top_k=top_k, routing=routing,
                         on_step=on_step, canvas_length=model.config.canvas_length,
                         vocab_size=vocab_size(model))
        self.pipe = pipe
        self.model = model
        self.step_passes: list[int] = []  # decoder passes per step: 1 + its corrector sweeps
        self.canvas_budget = 0  # predictor steps per canvas
        self._step_start = time.perf_counter()
        # the predictor's router calls are the last ones before scheduler.step
        self.num_routers = len(decoder_routers(model))

    @contextlib.contextmanager
    def installed(self):
        pipe, scheduler = self.pipe, self.pipe.scheduler
        patches = [(pipe, "_prepare_inputs", self._wrap_inputs(pipe._prepare_inputs)),
                   (scheduler, "step", self._wrap_step(scheduler.step))]
        if hasattr(scheduler, "step_correct"):
            patches.append((scheduler, "step_correct", self._wrap_correct(scheduler.step_correct)))
        with self.patched(patches, self.model):
            yield

    def _wrap_inputs(self, original):
        @functools.wraps(original)
        def prepare_inputs(**kwargs):
            ids, mask, extra = original(**kwargs)
            if ids.shape[0] != 1:
                raise ValueError("Recording a diffusers pipeline takes one prompt at a time.")
            self.prompt_ids = ids
            return ids, mask, extra

        return prepare_inputs

    def _wrap_step(self, original):
        @functools.wraps(original)
        def step(model_output, timestep, sample, **kwargs):
            step_idx = int(timestep)
            if step_idx == 0:  # the pipeline starts every canvas at step 0
                self.flush_encoder()
                self.canvas += 1
                self.canvas_budget = self.pipe.scheduler.num_inference_steps
            self.step_passes.append(1)
            out = original(model_output, timestep, sample, **kwargs)
            accepted = _committed_mask(out, self.pipe.scheduler)
            self.pending.update(
                canvas_in=sample,
                sampled=out.sampled_tokens,
                accepted=accepted,
                draft=out.prev_sample,  # replaced in finish() by what the pipeline kept
                active=torch.ones(sample.shape[0], dtype=torch.bool, device=sample.device),
                stop=torch.zeros(sample.shape[0], dtype=torch.bool, device=sample.device),
            )
            self.reduce_logits(out.pred_logits)
            remaining = self.canvas_budget - step_idx
            self.flush_step(remaining, self._temperature(step_idx, kwargs), self._step_start,
                            layers=self.num_routers)
            self._step_start = time.perf_counter()
            return out

        return step

    def _wrap_correct(self, original):
        @functools.wraps(original)
        def step_correct(*args, **kwargs):
            if self.step_passes:  # a sweep over the step just taken
                self.step_passes[-1] += 1
            return original(*args, **kwargs)

        return step_correct

    def _temperature(self, step_idx: int, kwargs: dict) -> float:
        scheduler = self.pipe.scheduler
        cfg = scheduler.config
        if type(scheduler).__name__ == "EntropyBoundScheduler":
            n = scheduler.num_inference_steps
            return cfg.t_min + (cfg.t_max - cfg.t_min) * (n - step_idx) / n
        temperature = kwargs.get("temperature")
        return float(temperature) if temperature is not None else math.nan

    def finish(self, *, complete, seed, call_kwargs, output=None) -> Trace:
        if self.prompt_ids is None:
            raise RuntimeError("The pipeline stopped before it tokenized the prompt.")
        output_ids = (
            output.sequences.detach().cpu().numpy() if output is not None
            else np.zeros((1, 0), np.int64)
        )
        # What the pipeline kept after each step: the next step's input, or the canvas it output.
        canvas_in = self.stack("canvas_in", np.int32)
        draft = self.stack("draft", np.int32)
        stop = self.stack("stop", bool)
        canvases = np.array([m[0] for m in self.step_meta], dtype=np.int64)
        length = self.canvas_length
        for s in range(len(canvases)):
            last_of_canvas = s + 1 == len(canvases) or canvases[s + 1] != canvases[s]
            if not last_of_canvas:
                draft[:, s] = canvas_in[:, s + 1]
            elif output_ids.shape[1] >= (canvases[s] + 1) * length:
                draft[:, s] = output_ids[:, canvases[s] * length : (canvases[s] + 1) * length]
            if last_of_canvas and complete:
                steps_taken = int((canvases == canvases[s]).sum())
                stop[:, s] = steps_taken < self.canvas_budget  # ended early: the stop fired
        # as transformers counts: tokens up to the first eos (what the text holds), not padding
        eos = call_kwargs.get("eos_token_id", self.pipe.eos_token_id)
        generated = output_ids.shape[1]
        if eos is not None and output_ids.size and (output_ids[0] == eos).any():
            generated = int(np.flatnonzero(output_ids[0] == eos)[0]) + 1
        passes = sum(self.step_passes)
        tpf = np.array([generated / passes if passes else math.nan])
        scheduler = self.pipe.scheduler
        settings = {
            "seed": seed,
            "top_k": self.top_k,
            "sampler": type(scheduler).__name__,
            "scheduler_config": {k: v for k, v in dict(scheduler.config).items()
                                 if not k.startswith("_")},
            "max_denoising_steps": self.canvas_budget or call_kwargs.get("num_inference_steps"),
            **{k: v for k, v in call_kwargs.items()
               if k in ("gen_length", "num_inference_steps", "temperature", "stability_threshold",
                        "confidence_threshold", "eos_token_id")},
            "forward_passes": passes,
            "step_passes": self.step_passes[: len(self.step_meta)],
        }
        if "entropy_bound" in scheduler.config:
            settings["entropy_bound"] = float(scheduler.config.entropy_bound)
        meta = {"complete": complete, "source": "diffusers", "settings": settings,
                **model_facts(self.model)}
        return self.build(output_ids=output_ids, tokens_per_forward=tpf, meta=meta,
                          overrides={"draft": draft, "stop": stop})


def _committed_mask(out: Any, scheduler: Any) -> torch.Tensor:
    """The scheduler's own committed mask, or "took the predicted token" when it has none."""
    committed = getattr(scheduler, "_committed", None)
    if isinstance(committed, torch.Tensor) and committed.shape == out.prev_sample.shape:
        # BlockRefinementScheduler: everything committed so far, not only this step's commits
        return committed.clone()
    accepted = getattr(out, "accepted_index", None)
    if accepted is not None:
        return accepted
    transfer = getattr(out, "transfer_index", None)
    if transfer is not None:
        editing = getattr(out, "editing_transfer_index", None)
        return transfer | editing if editing is not None else transfer
    return out.prev_sample == out.sampled_tokens


def diffusers_incompatibility() -> str | None:
    """Why diffusers' DiffusionGemmaPipeline cannot run with the installed transformers, or None.

    diffusers 0.42 calls the decoder's mask builder with ``past_key_values=``, which
    transformers 5.24 renamed to ``cache=``; the pipeline then fails deep inside its first step.
    Checked on the code itself (the pipeline's call and the decoder's signature), not on version
    numbers, so a diffusers release that catches up passes.
    """
    import importlib
    import inspect

    try:
        from transformers import DiffusionGemmaDecoderModel

        pipeline = importlib.import_module(
            "diffusers.pipelines.diffusion_gemma.pipeline_diffusion_gemma")
    except ImportError:
        return "diffusers is not installed (pip install 'dgviz[diffusers]')"
    builder = DiffusionGemmaDecoderModel.create_diffusion_decoder_attention_mask
    takes = inspect.signature(builder).parameters
    source = inspect.getsource(pipeline)
    if "past_key_values=past_key_values" in source and "past_key_values" not in takes:
        import diffusers
        import transformers

        return (f"diffusers {diffusers.__version__} calls the decoder with past_key_values=, "
                f"which transformers {transformers.__version__} renamed to cache=; the pipeline "
                "path needs transformers < 5.24 (pip install 'dgviz[diffusers]' installs a "
                "matching pair)")
    return None
