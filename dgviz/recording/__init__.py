"""Recording: run DiffusionGemma's own loops and keep what every denoising step did.

This package is the only part of dgviz that touches private transformers / diffusers internals
(a test checks it). It runs the libraries' own loops (`DiffusionGemmaForBlockDiffusion.generate`,
`DiffusionGemmaPipeline.__call__`) and wraps, on the model *instance* and only while recording,
the helpers those loops call; MoE routers get forward hooks. Everything the views need is reduced
on the model's device (entropy, top-k, confidence), kept there and copied to the host 32 steps at
a time (every step when ``on_step`` watches): never a canvas x vocabulary tensor. All wrappers
and hooks are removed when `record` returns, raises or is interrupted.

- `transformers_loop`: ``generate``'s wrappers; `diffusers_loop`: the pipeline's;
  `llada2_loop`: diffusers' ``LLaDA2Pipeline`` (LLaDA 2.x, masked diffusion);
- `collector`: the per-step arrays, `StepEvent`, building the `Trace`;
- `tokens`: prompt encoding and token text; `model_access`: devices, routers, model facts;
- `samplers`: the protocol a custom sampler implements inside ``generate``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..trace import Trace
from .collector import StepEvent
from .diffusers_loop import record_pipeline
from .llada2_loop import is_llada2_pipeline, record_llada2
from .model_access import check_model, is_pipeline
from .tokens import encode_prompt
from .transformers_loop import record_generate

__all__ = ["StepEvent", "encode_prompt", "record"]


def record(
    model: Any,
    tokenizer: Any,
    prompt: Any,
    *,
    seed: int | None = None,
    top_k: int = 5,
    routing: bool = True,
    on_step: Callable[[StepEvent], None] | None = None,
    sampler: Callable[[Any, Any], Any] | None = None,
    hold: Mapping[int, int | str] | None = None,
    **generate_kwargs: Any,
) -> Trace:
    """Run DiffusionGemma's own ``generate`` and record every denoising step.

    Parameters
    ----------
    model:
        A ``DiffusionGemmaForBlockDiffusion`` (a tiny one or the real 26B-A4B, any device map;
        offloaded, its token embedding must stay on the execution device: docs/real-model.md),
        or a diffusers ``DiffusionGemmaPipeline`` (then ``tokenizer`` may be ``None``), or a
        diffusers ``LLaDA2Pipeline`` (LLaDA 2.x; see `dgviz.recording.llada2_loop`).
    tokenizer:
        Its tokenizer or processor (used to tokenize the prompt and to decode token text).
    prompt:
        A string (tokenized as is), a chat (list of ``{"role", "content"}`` messages, rendered
        with the chat template and a generation prompt), a list of strings (a batch, left-padded)
        or input ids (list of ints, or a ``[batch, length]`` tensor / array).
    seed:
        ``torch.manual_seed(seed)`` right before generating, so a recorded run equals
        ``torch.manual_seed(seed); model.generate(...)`` token for token.
    top_k:
        Alternatives kept per position and step.
    routing:
        Record MoE routing (decoder: per step; encoder: per token read).
    on_step:
        Called with a `StepEvent` after every step (for live views).
    sampler:
        ``sampler(generation_config, model) -> sampler object`` replacing the default
        ``EntropyBoundSampler`` inside the real generate loop (same interface:
        ``initialize_canvas``, ``accept_canvas``, ``renoise_canvas``). See `dgviz.schedules`.
    hold:
        ``{position: token}``: fix tokens in the model's own loop (infilling, constraints).
        Positions count from the first generated token (so later canvases can be held too);
        tokens are ids or text that is exactly one token. A held position reads its token from
        its canvas's first step, is sampled and accepted with it at every step (never
        re-noised), and ends in the output; the views show it as ``held``.
    **generate_kwargs:
        ``model.generate``'s settings and inputs (``max_new_tokens``, ``max_denoising_steps``,
        ``t_min``, ``t_max``, ``sampler_config``, ``stability_threshold``, ...), checked before
        any work (an unknown name is refused with a suggestion), then passed on unchanged.

    Returns
    -------
    Trace
        If you interrupt the run (Ctrl-C, or the notebook's stop button), the steps done so far
        come back as a trace with ``trace.complete == False`` and a warning. If generation
        raises, the partial trace is attached to the exception as ``err.partial_trace``.
    """
    if hold is not None and (is_llada2_pipeline(model) or is_pipeline(model)):
        raise NotImplementedError(
            "hold= works inside transformers' DiffusionGemmaForBlockDiffusion.generate only; a "
            "diffusers pipeline's schedulers cannot hold tokens yet. Record pipe.model with its "
            "tokenizer instead.")
    if is_llada2_pipeline(model):  # masked diffusion: its own loop, its own argument checks
        return record_llada2(model, tokenizer, prompt, seed=seed, top_k=top_k, routing=routing,
                             on_step=on_step, sampler=sampler, **generate_kwargs)
    from .arguments import check_common, vocabulary_of

    if not is_pipeline(model):
        check_model(model)
    seed, top_k, routing, on_step = check_common(
        seed=seed, top_k=top_k, routing=routing, on_step=on_step, vocab=vocabulary_of(model))
    if is_pipeline(model):
        if sampler is not None:
            raise TypeError("sampler= replaces the acceptance rule of transformers' generate; a "
                            "diffusers pipeline takes its scheduler instead (pipe.scheduler).")
        return record_pipeline(model, prompt, seed=seed, top_k=top_k, routing=routing,
                               on_step=on_step, **generate_kwargs)
    return record_generate(model, tokenizer, prompt, seed=seed, top_k=top_k, routing=routing,
                           on_step=on_step, sampler=sampler, hold=hold, **generate_kwargs)
