"""Record what DiffusionGemma's sampler does at every denoising step.

This is the only module that touches private transformers / diffusers internals. It runs the
libraries' own loops (`DiffusionGemmaForBlockDiffusion.generate`, `DiffusionGemmaPipeline.__call__`)
and wraps, on the model *instance* and only while recording, the helpers those loops call:

- ``_prepare_sampler`` (the sampler's ``accept_canvas`` sees the processed logits, the canvas the
  decoder read, the sampled canvas and, after it runs, ``accepted_token_mask``),
- ``_denoising_step`` (step boundaries, the argmax draft after the stop-criterion masking),
- ``_prepare_diffusion_stopping_criteria`` (whether the adaptive stop fired),
- ``_prepare_denoiser_inputs`` / ``_finalize_canvas`` (canvas boundaries, finished rows),
- forward hooks on every MoE router (expert ids, weights and router entropy).

Everything the views need is reduced on the model's device (entropy, top-k, confidence) and
copied to the host once per step as one packed float32 buffer: never a canvas x vocabulary
tensor. All wrappers and hooks are removed when `record` returns, raises or is interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .trace import Trace

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


@dataclass
class StepEvent:
    """One finished denoising step, handed to ``record(..., on_step=...)`` as it happens.

    Arrays are numpy, batch first, without the step axis (``canvas_in`` is ``[B, L]``,
    ``expert_ids`` is ``[B, N, L, k]``; see `Trace` for the meaning of each).
    ``new_token_text`` holds the decoded text of ids this step showed for the first time.
    ``snapshot()`` builds the `Trace` of the steps so far (``complete`` False), as `record`
    builds the final one; call it from ``on_step`` (live views).
    """

    step: int
    canvas: int
    remaining: int
    temperature: float
    seconds: float
    arrays: dict[str, np.ndarray]
    new_token_text: dict[int, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # as `Trace.settings` will hold them
    snapshot: Callable[[], Trace] | None = field(default=None, repr=False, compare=False)


# ---------------------------------------------------------------------------- public entry point
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
    **generate_kwargs: Any,
) -> Trace:
    """Run DiffusionGemma's own ``generate`` and record every denoising step.

    Parameters
    ----------
    model:
        A ``DiffusionGemmaForBlockDiffusion`` (a tiny one or the real 26B-A4B, any device map),
        or a diffusers ``DiffusionGemmaPipeline`` (then ``tokenizer`` may be ``None``).
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
    **generate_kwargs:
        Passed to ``model.generate`` unchanged (``max_new_tokens``, ``max_denoising_steps``,
        ``t_min``, ``t_max``, ``sampler_config``, ``stability_threshold``, ...).

    Returns
    -------
    Trace
        If you interrupt the run (Ctrl-C, or the notebook's stop button), the steps done so far
        come back as a trace with ``trace.complete == False`` and a warning. If generation
        raises, the partial trace is attached to the exception as ``err.partial_trace``.
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer (got {top_k!r}).")
    if _is_diffusers_pipeline(model):
        from .record_diffusers import record_pipeline

        return record_pipeline(
            model, prompt, seed=seed, top_k=top_k, routing=routing, on_step=on_step,
            **generate_kwargs,
        )
    _check_model(model)
    tok = _text_tokenizer(tokenizer)
    _check_tokenizer(model, tok)
    steps = generate_kwargs.get("max_denoising_steps")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ValueError(
            f"max_denoising_steps must be an integer >= 1 (got {steps!r}): it is the most "
            "denoising steps each canvas may take."
        )
    input_ids, attention_mask = encode_prompt(tokenizer, prompt, device=_model_device(model))
    _check_ids(model, input_ids)
    if attention_mask is not None:
        generate_kwargs.setdefault("attention_mask", attention_mask)
    # Recording code runs inside the decoder and sampler; torch.compile (used with static caches)
    # would try to trace it. Recording is for looking, not for speed.
    generate_kwargs.setdefault("disable_compile", True)
    generate_kwargs["return_dict_in_generate"] = True

    recorder = _Recorder(model, tok, top_k=top_k, routing=routing, on_step=on_step,
                         sampler_factory=sampler)
    recorder.prompt_ids = input_ids
    if seed is not None:
        torch.manual_seed(seed)
    output = None
    try:
        with recorder.installed():
            output = model.generate(input_ids, **generate_kwargs)
    except KeyboardInterrupt:
        trace = recorder.finish(complete=False, seed=seed)
        warnings.warn(
            f"Recording interrupted after {trace.num_steps} steps; returning the partial trace "
            "(trace.complete is False).",
            stacklevel=2,
        )
        return trace
    except Exception as err:
        with contextlib.suppress(Exception):
            err.partial_trace = recorder.finish(complete=False, seed=seed)  # type: ignore[attr-defined]
        raise
    return recorder.finish(complete=True, seed=seed, output=output)


# ---------------------------------------------------------------------------- input handling
def _is_diffusers_pipeline(obj: Any) -> bool:
    return type(obj).__name__ == "DiffusionGemmaPipeline" and hasattr(obj, "scheduler")


def _check_model(model: Any) -> None:
    from transformers import DiffusionGemmaForBlockDiffusion

    if not isinstance(model, DiffusionGemmaForBlockDiffusion):
        name = type(model).__name__
        raise TypeError(
            f"dgviz.record needs a DiffusionGemmaForBlockDiffusion (or a diffusers "
            f"DiffusionGemmaPipeline), got {name}. Load the model with "
            "transformers.DiffusionGemmaForBlockDiffusion.from_pretrained(...); "
            "AutoModel/AutoModelForCausalLM give classes without the block-diffusion generate loop."
        )


def _text_tokenizer(tokenizer: Any) -> Any:
    """A processor wraps its tokenizer; we decode with the tokenizer itself."""
    if tokenizer is None:
        raise TypeError(
            "dgviz.record needs the model's tokenizer (or processor) to read the prompt and to "
            "show token text: record(model, tokenizer, prompt)."
        )
    inner = getattr(tokenizer, "tokenizer", None)
    return inner if inner is not None and hasattr(inner, "convert_ids_to_tokens") else tokenizer


def _check_tokenizer(model: Any, tok: Any) -> None:
    vocab = model.config.get_text_config(decoder=True).vocab_size
    try:
        size = len(tok)
    except TypeError:
        return
    if size > vocab:
        raise ValueError(
            f"This tokenizer knows {size} tokens but the model's vocabulary has {vocab}: they do "
            "not belong together. Load both from the same checkpoint directory."
        )


def _model_device(model: Any) -> torch.device:
    try:
        return model.model.decoder.embed_tokens.weight.device
    except AttributeError:
        return model.device


def encode_prompt(
    tokenizer: Any, prompt: Any, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Turn a prompt (text, chat, batch of texts, or ids) into ``[B, P]`` input ids (+ mask)."""
    mask = None
    if isinstance(prompt, torch.Tensor | np.ndarray) or (
        isinstance(prompt, list | tuple) and prompt and all(isinstance(i, int) for i in prompt)
    ):
        ids = torch.as_tensor(np.asarray(prompt), dtype=torch.long)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2:
            raise ValueError(
                f"Prompt ids must be [length] or [batch, length], got shape {tuple(ids.shape)}.")
    elif isinstance(prompt, str):
        if not prompt:
            raise ValueError("The prompt is empty: give some text, a chat or input ids.")
        ids = _text_tokenizer(tokenizer)(prompt, return_tensors="pt")["input_ids"]
    elif isinstance(prompt, list | tuple) and prompt and all(isinstance(m, dict) for m in prompt):
        if not all("role" in m and "content" in m for m in prompt):
            raise ValueError('A chat prompt is a list of {"role": ..., "content": ...} messages.')
        rendered = tokenizer.apply_chat_template(
            list(prompt), add_generation_prompt=True, tokenize=True, return_tensors="pt",
            return_dict=True,
        )
        ids = rendered["input_ids"]
    elif isinstance(prompt, list | tuple) and prompt and all(isinstance(p, str) for p in prompt):
        if not all(prompt):
            raise ValueError("One of the batch prompts is empty.")
        tok = _text_tokenizer(tokenizer)
        side = getattr(tok, "padding_side", "right")
        try:
            tok.padding_side = "left"  # canvases follow the prompt: pad on the left
            enc = tok(list(prompt), return_tensors="pt", padding=True)
        finally:
            tok.padding_side = side
        ids, mask = enc["input_ids"], enc["attention_mask"]
    else:
        raise TypeError(
            "prompt must be a string, a chat (list of role/content dicts), a list of strings, "
            f"or input ids; got {type(prompt).__name__}"
            + (" (empty)" if isinstance(prompt, list | tuple) and not prompt else "")
            + "."
        )
    if ids.shape[-1] == 0:
        raise ValueError("The prompt tokenized to zero tokens: give some text or ids.")
    ids = ids.to(device)
    return ids, (mask.to(device) if mask is not None else None)


def _check_ids(model: Any, ids: torch.Tensor) -> None:
    vocab = model.config.get_text_config(decoder=True).vocab_size
    if ids.numel() and (int(ids.max()) >= vocab or int(ids.min()) < 0):
        raise ValueError(
            f"The prompt has token ids outside the model's vocabulary (0..{vocab - 1}): "
            f"min {int(ids.min())}, max {int(ids.max())}. Was it tokenized with another tokenizer?"
        )


# ---------------------------------------------------------------------------- token text
def token_texts(tokenizer: Any, ids: np.ndarray) -> dict[int, str]:
    """Decoded text of each distinct id, keeping the leading space a token carries."""
    uniq = [int(i) for i in np.unique(ids)]
    if not uniq:
        return {}
    pieces = tokenizer.convert_ids_to_tokens(uniq)
    out = {}
    for i, piece in zip(uniq, pieces, strict=True):
        text = tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if isinstance(piece, str) and piece[:1] in ("▁", "Ġ") and not text.startswith(" "):
            text = " " + text  # sentencepiece / byte-BPE word starts decode without their space
        out[i] = text
    return out


# ---------------------------------------------------------------------------- the recorder
class Collector:
    """Collects the steps of one run and builds the Trace; shared by every recording path.

    A recording path sets ``prompt_ids``, fills ``pending`` with the step's device tensors,
    lets the router hooks fill their sinks, and calls `flush_step` once per step.
    """

    def __init__(self, tokenizer, *, top_k: int, routing: bool, on_step, canvas_length: int):
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.routing = routing
        self.on_step = on_step
        self.canvas_length = canvas_length
        self.prompt_ids: torch.Tensor | None = None
        self.canvas = -1
        self.steps: list[dict[str, np.ndarray]] = []
        self.step_meta: list[tuple[int, int, float, float]] = []  # canvas, remaining, temp, seconds
        self.encoder_routing: list[dict[str, np.ndarray]] = []
        self.pending: dict[str, torch.Tensor] = {}
        self.decoder_routes: list[tuple] = []
        self.encoder_routes: list[tuple] = []
        self._token_text: dict[int, str] = {}  # every id decoded so far

    @contextlib.contextmanager
    def patched(self, patches: list[tuple[Any, str, Any]], model) -> Iterator[None]:
        """Set ``obj.name = fn`` for each patch and hook the routers; undo all of it on exit."""
        previous = [(obj, name, obj.__dict__.get(name)) for obj, name, _ in patches]
        try:
            for obj, name, fn in patches:
                setattr(obj, name, fn)
            with self.router_hooks(model):
                yield
        finally:
            for obj, name, old in previous:
                if old is None:
                    obj.__dict__.pop(name, None)  # back to the class's own method
                else:
                    setattr(obj, name, old)
            self.flush_encoder()

    @contextlib.contextmanager
    def router_hooks(self, model) -> Iterator[None]:
        handles = []
        try:
            if self.routing:
                for router in decoder_routers(model):
                    handles.append(router.register_forward_hook(_route_hook(self.decoder_routes)))
                for router in encoder_routers(model):
                    handles.append(router.register_forward_hook(_route_hook(self.encoder_routes)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def reduce_logits(self, logits: torch.Tensor) -> None:
        """Confidence, entropy and top-k of one step's distribution, on the model's device."""
        # Masked (-inf) logits become the lowest finite float, so 0 · log 0 comes out as 0, not
        # NaN. (torch.special.entr does the same but is ~8x slower on CPU.)
        logits = logits.float().clamp(min=torch.finfo(torch.float32).min)
        log_probs = torch.log_softmax(logits, dim=-1)
        probs = log_probs.exp()
        top_p, top_i = probs.topk(min(self.top_k, probs.shape[-1]), dim=-1)
        self.pending.update(
            confidence=top_p[..., 0],
            entropy=-(probs * log_probs).sum(-1),
            topk_ids=top_i,
            topk_probs=top_p,
        )

    def flush_step(self, remaining: int, temperature: float, start: float,
                   layers: int | None = None) -> None:
        """Copy the pending step to the host (one transfer) and hand it to ``on_step``.

        ``layers``: keep only the last ``layers`` decoder router calls (extra decoder passes,
        like diffusers' corrector sweeps, also fire the hooks).
        """
        pending, self.pending = self.pending, {}
        batch, length = pending["canvas_in"].shape
        routes = self.decoder_routes[-layers:] if layers else self.decoder_routes[:]
        self.decoder_routes.clear()  # the hooks hold this list: empty it in place
        if routes:
            n, k = len(routes), routes[0][0].shape[-1]
            # [N, B*L, k] -> [B, N, L, k]
            ids, weights, entropy = (torch.stack([r[i] for r in routes]) for i in range(3))
            pending["expert_ids"] = ids.view(n, batch, length, k).transpose(0, 1)
            pending["expert_weights"] = weights.view(n, batch, length, k).transpose(0, 1)
            pending["router_entropy"] = entropy.view(n, batch, length).transpose(0, 1)
        host = _to_host(pending)
        seconds = time.perf_counter() - start
        self.steps.append(host)
        self.step_meta.append((self.canvas, remaining, temperature, seconds))
        if self.on_step is not None:
            self.on_step(
                StepEvent(
                    step=len(self.steps) - 1,
                    canvas=self.canvas,
                    remaining=remaining,
                    temperature=temperature,
                    seconds=seconds,
                    arrays=host,
                    new_token_text=self._new_token_text(host),
                    settings=self.settings(),
                    snapshot=self.snapshot,
                )
            )

    def settings(self) -> dict[str, Any]:
        """The run's settings as known so far (recording paths add what they know)."""
        return {"top_k": self.top_k}

    def flush_encoder(self) -> None:
        routes = self.encoder_routes[:]
        self.encoder_routes.clear()
        if not routes:
            return
        n, k = len(routes), routes[0][0].shape[-1]
        batch = self.prompt_ids.shape[0] if self.prompt_ids is not None else 1
        tokens = routes[0][0].shape[0] // batch
        ids, weights, entropy = (torch.stack([r[i] for r in routes]) for i in range(3))
        packed = {  # [N, B*T, k] -> [B, T, N, k]
            "encoder_expert_ids": ids.view(n, batch, tokens, k).permute(1, 2, 0, 3),
            "encoder_expert_weights": weights.view(n, batch, tokens, k).permute(1, 2, 0, 3),
            "encoder_router_entropy": entropy.view(n, batch, tokens).permute(1, 2, 0),
        }
        self.encoder_routing.append(_to_host(packed))

    def _token_texts(self, ids: np.ndarray) -> dict[int, str]:
        """`token_texts` of ``ids``, decoding each id once per run."""
        uniq = np.unique(ids)
        known = np.fromiter(self._token_text, np.int64, len(self._token_text))
        self._token_text.update(token_texts(self.tokenizer, np.setdiff1d(uniq, known)))
        return {int(i): self._token_text[int(i)] for i in uniq}

    def _new_token_text(self, host: dict[str, np.ndarray]) -> dict[int, str]:
        ids = np.concatenate([host[k].ravel() for k in _ID_ARRAYS if k in host])
        known = np.fromiter(self._token_text, np.int64, len(self._token_text))
        return self._token_texts(np.setdiff1d(np.unique(ids), known))

    def stack(self, name: str, dtype) -> np.ndarray | None:
        """``name`` over all steps, ``[B, S, ...]``; None for routing arrays never recorded."""
        if self.steps and name in self.steps[0]:
            return np.stack([s[name] for s in self.steps], axis=1).astype(dtype)
        if name not in _REQUIRED_SHAPES:
            return None
        batch = self.prompt_ids.shape[0] if self.prompt_ids is not None else 1
        tail = _REQUIRED_SHAPES[name](self.canvas_length, self.top_k)
        return np.zeros((batch, 0, *tail), dtype)

    def snapshot(self) -> Trace:
        """The steps recorded so far as a Trace (no output yet, ``complete`` False)."""
        batch = self.prompt_ids.shape[0] if self.prompt_ids is not None else 1
        return self.build(output_ids=np.zeros((batch, 0), np.int64),
                          tokens_per_forward=np.full(batch, np.nan),
                          meta={"complete": False, "settings": self.settings()})

    def build(self, *, output_ids: np.ndarray, tokens_per_forward: np.ndarray, meta: dict,
              overrides: dict[str, np.ndarray] | None = None) -> Trace:
        prompt = (self.prompt_ids.detach().cpu().numpy() if self.prompt_ids is not None
                  else np.zeros((1, 0)))
        arrays = {name: self.stack(name, dtype) for name, dtype in _STEP_DTYPES.items()}
        arrays.update(overrides or {})
        if self.encoder_routing:
            for name, dtype in (("encoder_expert_ids", np.int16),
                                ("encoder_expert_weights", np.float16),
                                ("encoder_router_entropy", np.float16)):
                parts = [e[name] for e in self.encoder_routing]
                arrays[name] = np.concatenate(parts, axis=1).astype(dtype)
        meta_steps = np.array(self.step_meta, dtype=np.float64).reshape(-1, 4)
        seen = [prompt, output_ids] + [arrays[n] for n in _ID_ARRAYS]
        token_text = self._token_texts(np.concatenate([a.ravel() for a in seen]))
        meta = {
            **meta,
            "text": self.tokenizer.batch_decode(output_ids, skip_special_tokens=True),
            "prompt_text": self.tokenizer.batch_decode(prompt, skip_special_tokens=True),
        }
        return Trace(
            **{name: value for name, value in arrays.items() if value is not None},
            step_canvas=meta_steps[:, 0].astype(np.int32),
            step_remaining=meta_steps[:, 1].astype(np.int32),
            temperature=meta_steps[:, 2],
            step_seconds=meta_steps[:, 3],
            prompt_ids=prompt,
            output_ids=output_ids,
            tokens_per_forward=tokens_per_forward,
            token_text=token_text,
            meta=meta,
        )


# the per-step arrays that hold token ids (their tokens' text goes into the trace)
_ID_ARRAYS = ("canvas_in", "sampled", "draft", "topk_ids")
_STEP_DTYPES = {
    "canvas_in": np.int32, "sampled": np.int32, "draft": np.int32, "accepted": bool,
    "confidence": np.float32, "entropy": np.float32, "topk_ids": np.int32,
    "topk_probs": np.float32, "active": bool, "stop": bool, "expert_ids": np.int16,
    "expert_weights": np.float16, "router_entropy": np.float16,
}
# trailing shape of each required per-step array, from (canvas_length, top_k)
_REQUIRED_SHAPES = {
    **{n: (lambda length, k: (length,)) for n in
       ("canvas_in", "sampled", "draft", "accepted", "confidence", "entropy")},
    "topk_ids": lambda length, k: (length, k),
    "topk_probs": lambda length, k: (length, k),
    "active": lambda length, k: (),
    "stop": lambda length, k: (),
}


def _route_hook(sink: list):
    def hook(_module, _inputs, output):
        probs, weights, index = output[0], output[1], output[2]
        probs = probs.float()
        sink.append((index, weights, -(probs * probs.clamp_min(1e-30).log()).sum(-1)))

    return hook


class _Recorder(Collector):
    """Records transformers' generate. Installed on a model instance only inside `installed()`."""

    def __init__(self, model, tokenizer, *, top_k, routing, on_step, sampler_factory):
        super().__init__(tokenizer, top_k=top_k, routing=routing, on_step=on_step,
                         canvas_length=model.config.canvas_length)
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

    def __init__(self, inner, recorder: _Recorder):
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


def _to_host(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Copy a step's tensors to the host in one transfer (packed as float32, then unpacked).

    Token and expert ids stay exact: float32 holds integers up to 2**24 (the real vocabulary is
    262,144 tokens).
    """
    names = list(tensors)
    if all(t.device.type == "cpu" for t in tensors.values()):  # nothing to transfer
        # copy: generate reuses some of these tensors in place
        return {n: t.detach().numpy().copy() for n, t in tensors.items()}
    flat = [tensors[n].detach().reshape(-1).to(torch.float32) for n in names]
    packed = torch.cat(flat).cpu().numpy()
    out, offset = {}, 0
    for name, piece in zip(names, flat, strict=True):
        size = piece.numel()
        out[name] = packed[offset : offset + size].reshape(tuple(tensors[name].shape))
        offset += size
    return out


# ---------------------------------------------------------------------------- model facts
def decoder_routers(model: Any) -> list[torch.nn.Module]:
    layers = model.model.decoder.layers
    return [layer.router for layer in layers if hasattr(layer, "router")]


def encoder_routers(model: Any) -> list[torch.nn.Module]:
    enc = model.model.encoder
    lm = getattr(enc, "language_model", enc)
    return [layer.router for layer in lm.layers if hasattr(layer, "router")]


def model_facts(model: Any) -> dict[str, Any]:
    """Facts about the model kept in every trace: sizes, versions and a config digest."""
    import transformers

    from . import __version__

    text = model.config.get_text_config(decoder=True)
    config_json = model.config.to_json_string(use_diff=False)
    versions = {"dgviz": __version__, "transformers": transformers.__version__,
                "torch": torch.__version__}
    try:
        import diffusers

        versions["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    return {
        "model": {
            "class": type(model).__name__,
            "name_or_path": getattr(model.config, "_name_or_path", ""),
            "canvas_length": model.config.canvas_length,
            "vocab_size": text.vocab_size,
            "num_layers": text.num_hidden_layers,
            "config_digest": hashlib.sha256(config_json.encode()).hexdigest()[:16],
        },
        "num_experts": getattr(text, "num_experts", None),
        "top_k_experts": getattr(text, "top_k_experts", None),
        "versions": versions,
    }
