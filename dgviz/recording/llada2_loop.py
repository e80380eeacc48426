"""Record diffusers' ``LLaDA2Pipeline.__call__`` (inclusionAI's LLaDA 2.x MoE) into a Trace.

Like every dgviz recording path this runs the library's own loop. LLaDA2 is masked diffusion: a
block of ``block_length`` positions starts as the mask token, and every step the scheduler
(``BlockRefinementScheduler``) commits the positions it is most confident of; LLaDA 2.1 also
*edits* committed tokens the model now predicts otherwise (``editing_threshold``), in extra
steps after the block's masks are filled. What is hooked, on the pipeline instance and only while
recording (`Collector.patched` removes all of it):

- the public ``callback_on_step_end``: step boundaries, the block the pipeline kept after the
  step (``block_x``), which positions were still masked (``active_block``). A callback the
  caller passes still runs (first, with the tensors it asked for), and what it returns counts;
- ``scheduler.step`` (wrapped): the block the model read, the sampled tokens and the logits,
  which the callback does not carry;
- ``_prepare_input_ids`` (wrapped): the prompt ids as the pipeline tokenized them;
- forward hooks on the MoE routers, found by module type (`ROUTER_TYPES`), not by attribute path.

How a LLaDA2 trace reads (`docs/other-models.md`):

- a canvas is one block; ``draft`` is the block the pipeline kept after the step (mask tokens
  where nothing is committed yet); ``accepted`` marks the positions holding a committed token
  (the prompt's own positions in a block that starts inside the prompt count as committed);
- ``meta["mask_token_id"]`` makes `Trace.states` show still-masked positions as MASKED (never
  "re-noised"), an edit as "accepted this step", and `Trace.flips` count edits only (a mask being
  filled is not a flip);
- ``step_remaining`` counts the block's mask steps down (N … 1); editing steps after the masks
  are filled show 0; ``stop`` marks a block that filled its masks before its step budget;
- confidence, entropy and top-k come from the distribution the scheduler sampled from (its
  temperature, top-k / top-p filter; raw logits when greedy);
- routing: the current block's positions only (the model re-reads the prompt and earlier blocks
  every step; their routing is not kept); router entropy is that of the sigmoid scores
  normalised over the experts;
- one prompt at a time, as the DiffusionGemma pipeline path.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import math
import time
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import numpy as np
import torch

from ..trace import Trace
from .collector import Collector, record_keeping_partial
from .model_access import embedding_device

FAMILY = "llada2"

#: Router module types recognised, by class name anywhere in the module's class hierarchy
#: (remote-code classes cannot be imported ahead of time). All return
#: ``(topk_idx [T, k], topk_weight [T, k], logits [T, E])`` and score experts with a sigmoid.
ROUTER_TYPES = ("LLaDA2MoeGate", "BailingMoeV2Gate")

# The callback tensors the recorder reads (all in the pipeline's _callback_tensor_inputs).
_CALLBACK_INPUTS = ("block_x", "active_block")


def is_llada2_pipeline(obj: Any) -> bool:
    """A diffusers ``LLaDA2Pipeline`` (or a subclass; checked by name: diffusers is optional)."""
    return (any(cls.__name__ == "LLaDA2Pipeline" for cls in type(obj).__mro__)
            and hasattr(obj, "scheduler") and hasattr(obj, "model"))


def llada2_incompatibility() -> str | None:
    """Why diffusers' LLaDA2Pipeline cannot be recorded here, or None."""
    try:
        import diffusers
    except ImportError:
        return "diffusers is not installed (pip install 'dgviz[diffusers]')"
    try:
        from diffusers import LLaDA2Pipeline  # noqa: F401
    except ImportError as err:
        return (f"diffusers {diffusers.__version__} has no usable LLaDA2Pipeline (dgviz records "
                f"the one in diffusers 0.42): {err}")
    return None


def routers(model: Any) -> list[torch.nn.Module]:
    """The model's MoE routers, in call order: modules whose class (or a base class) is one of
    `ROUTER_TYPES`."""
    return [m for m in model.modules()
            if any(cls.__name__ in ROUTER_TYPES for cls in type(m).__mro__)]


def record_llada2(
    pipe: Any,
    tokenizer: Any,
    prompt: Any,
    *,
    seed: Any,
    top_k: Any,
    routing: Any,
    on_step: Any,
    sampler: Any = None,
    **call_kwargs: Any,
) -> Trace:
    """`dgviz.record` for a diffusers ``LLaDA2Pipeline``; see there and this module's docstring.

    ``sampling_top_k=`` is the pipeline's own ``top_k`` (its sampling cut-off): ``top_k`` is
    dgviz's (alternatives kept per position).
    """
    from .arguments import check_common, check_pipeline_kwargs, vocabulary_of

    problem = llada2_incompatibility()
    if problem is not None:
        raise RuntimeError(f"Cannot record this pipeline: {problem}.")
    if sampler is not None:
        raise TypeError("sampler= replaces the acceptance rule of transformers' generate; "
                        "LLaDA2Pipeline takes its scheduler instead (pipe.scheduler).")
    seed, top_k, routing, on_step = check_common(
        seed=seed, top_k=top_k, routing=routing, on_step=on_step, vocab=vocabulary_of(pipe))
    sampling_top_k = call_kwargs.pop("sampling_top_k", None)
    call_kwargs = check_pipeline_kwargs(pipe, call_kwargs)
    if sampling_top_k is not None:
        call_kwargs["top_k"] = sampling_top_k
    tok = pipe.tokenizer if pipe.tokenizer is not None else tokenizer
    if tok is None:
        raise TypeError("This LLaDA2Pipeline has no tokenizer: pass one, "
                        "dgviz.record(pipe, tokenizer, prompt), to decode token text.")
    _set_prompt(call_kwargs, prompt)
    if seed is not None:
        torch.manual_seed(seed)
        device = embedding_device(pipe.model)
        call_kwargs.setdefault("generator", torch.Generator(device=device).manual_seed(seed))
    recorder = _LLaDA2Recorder(pipe, tok, call_kwargs, seed=seed, top_k=top_k, routing=routing,
                               on_step=on_step)

    def call():
        with recorder.installed():
            return pipe(**recorder.call_kwargs)

    return record_keeping_partial(
        call, lambda complete, output: recorder.finish(complete=complete, output=output))


def _set_prompt(call_kwargs: dict, prompt: Any) -> None:
    one = "Recording a LLaDA2Pipeline takes one prompt at a time"
    if call_kwargs.get("input_ids") is not None:
        if prompt is not None:
            raise TypeError("Give the prompt or input_ids=, not both.")
        ids = call_kwargs["input_ids"]
        if isinstance(ids, torch.Tensor) and ids.ndim == 2 and ids.shape[0] != 1:
            raise ValueError(f"{one}: input_ids has {ids.shape[0]} rows.")
    elif isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("The prompt is blank: give some text, a chat or input ids.")
        call_kwargs["prompt"] = prompt
    elif isinstance(prompt, list | tuple) and prompt and all(isinstance(m, dict) for m in prompt):
        call_kwargs["messages"] = list(prompt)
    elif isinstance(prompt, list | tuple) and prompt and all(isinstance(p, str) for p in prompt):
        raise ValueError(f"{one} (a batch ends where its first row stops): record each prompt.")
    elif isinstance(prompt, torch.Tensor | np.ndarray) or (
            isinstance(prompt, list | tuple) and prompt
            and all(isinstance(i, int | np.integer) and not isinstance(i, bool) for i in prompt)):
        ids = torch.as_tensor(np.asarray(prompt) if not isinstance(prompt, torch.Tensor)
                              else prompt)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise TypeError(f"Prompt ids must be integers, got {ids.dtype}.")
        ids = ids.long().reshape(1, -1) if ids.ndim == 1 else ids.long()
        if ids.ndim != 2 or ids.shape[0] != 1 or ids.shape[1] == 0:
            raise ValueError(f"{one}: prompt ids must be [length] or [1, length], not empty; "
                             f"got shape {tuple(ids.shape)}.")
        call_kwargs["input_ids"] = ids
    else:
        raise TypeError("A LLaDA2Pipeline takes text, a chat (list of role/content messages) or "
                        f"one row of input ids as its prompt, got {type(prompt).__name__}.")


class _LLaDA2Recorder(Collector):
    def __init__(self, pipe, tokenizer, call_kwargs, *, seed, top_k, routing, on_step):
        self.pipe = pipe
        self.model = pipe.model
        self.defaults = {name: p.default
                         for name, p in inspect.signature(type(pipe).__call__).parameters.items()
                         if p.default is not inspect.Parameter.empty}
        self.block_length = int(call_kwargs.get("block_length")
                                or pipe.scheduler.config.block_length)
        super().__init__(tokenizer, top_k=top_k, routing=routing, on_step=on_step,
                         canvas_length=self.block_length)
        self.seed = seed  # after Collector's init, which clears it (it reseeds in `patched`)
        self.user_callback = call_kwargs.pop("callback_on_step_end", None)
        self.user_inputs = call_kwargs.pop("callback_on_step_end_tensor_inputs", None)
        if self.user_callback is not None and hasattr(self.user_callback, "tensor_inputs"):
            self.user_inputs = list(self.user_callback.tensor_inputs)  # a PipelineCallback
        if self.user_inputs is None:
            self.user_inputs = ["block_x"]  # the pipeline's default
        wanted = [*self.user_inputs, *(k for k in _CALLBACK_INPUTS if k not in self.user_inputs)]
        self.call_kwargs = {**call_kwargs, "callback_on_step_end": self._callback,
                            "callback_on_step_end_tensor_inputs": wanted}
        self.forward_passes = 0
        self.window = -1  # the current block's end (block_x's width)
        self.mask_steps = 0  # steps of the current block that filled masks
        self.early: list[bool] = []  # per finished canvas: it filled its masks before budget
        self._temperature = math.nan
        self._step_start = time.perf_counter()
        self._in: torch.Tensor | None = None
        self.routers = routers(self.model) if routing else []
        if routing and not self.routers:
            warnings.warn(
                f"No MoE router of a known type ({', '.join(ROUTER_TYPES)}) in "
                f"{type(self.model).__name__}: routing is not recorded.", stacklevel=4)

    # ------------------------------------------------------------------ what is hooked
    @contextlib.contextmanager
    def installed(self):
        pipe, scheduler = self.pipe, self.pipe.scheduler
        patches = [(pipe, "_prepare_input_ids", self._wrap_inputs(pipe._prepare_input_ids)),
                   (scheduler, "step", self._wrap_step(scheduler.step))]
        with self.patched(patches, self.model):
            yield

    @contextlib.contextmanager
    def router_hooks(self, model) -> Iterator[None]:
        """Hooks on the routers `routers` found: each keeps the current block's positions."""
        handles = [r.register_forward_hook(self._route_hook) for r in self.routers]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _route_hook(self, _module, _inputs, output):
        index, weights, logits = output[0], output[1], output[2]
        block = self.block_length  # one row: the block is the last positions
        scores = logits[-block:].float().sigmoid()
        probs = scores / scores.sum(-1, keepdim=True).clamp_min(1e-30)
        # the step's end takes the entropy of all layers' probabilities at once
        self.decoder_routes.append((index[-block:], weights[-block:], probs))

    def _wrap_inputs(self, original):
        @functools.wraps(original)
        def prepare_input_ids(*args, **kwargs):
            ids, mask = original(*args, **kwargs)
            if ids.ndim == 2 and ids.shape[0] != 1:
                raise ValueError("Recording a LLaDA2Pipeline takes one prompt at a time.")
            self.prompt_ids = ids.reshape(1, -1)
            return ids, mask

        return prepare_input_ids

    def _wrap_step(self, original):
        @functools.wraps(original)
        def step(model_output, timestep, sample, *args, **kwargs):
            self._in = sample.clone()  # a view of the pipeline's block: it changes in place
            out = original(model_output, timestep, sample, *args, **kwargs)
            self.pending["sampled"] = out.sampled_tokens
            self.reduce_logits(_sampling_logits(self.pipe.scheduler, model_output, kwargs))
            self._temperature = float(kwargs.get("temperature") or 0.0)
            return out

        return step

    def _callback(self, pipe, step, timestep, callback_kwargs):
        outputs = {}
        if self.user_callback is not None:
            mine = {k: callback_kwargs[k] for k in self.user_inputs}
            outputs = self.user_callback(pipe, step, timestep, mine) or {}
        block_x = outputs.get("block_x", callback_kwargs["block_x"])
        if block_x.shape[1] != self.window:  # a new block
            if self.window >= 0:
                self.early.append(self.mask_steps < self.pipe.scheduler.num_inference_steps)
            self.window = block_x.shape[1]
            self.canvas += 1
            self.mask_steps = 0
        filling = bool(callback_kwargs["active_block"].any())  # masks before this step
        self.mask_steps += filling
        budget = self.pipe.scheduler.num_inference_steps
        draft = block_x[:, -self.block_length:].clone()
        ones = torch.ones(draft.shape[0], dtype=torch.bool, device=draft.device)
        self.pending.update(
            canvas_in=self._in, draft=draft, accepted=draft != self.mask_token_id,
            active=ones, stop=~ones)
        self.forward_passes += 1
        self.flush_step(budget - int(timestep) if filling else 0, self._temperature,
                        self._step_start, layers=len(self.routers))
        self._step_start = time.perf_counter()
        return outputs

    # ------------------------------------------------------------------ settings and result
    def setting(self, name: str) -> Any:
        """A ``__call__`` argument as the pipeline uses it: given, else its default."""
        return self.call_kwargs.get(name, self.defaults.get(name))

    @property
    def mask_token_id(self) -> int:
        value = self.setting("mask_token_id")
        return int(value if value is not None else self.pipe.mask_token_id)

    def family_meta(self) -> dict[str, Any]:
        return {"family": FAMILY, "source": "diffusers", "mask_token_id": self.mask_token_id}

    def settings(self) -> dict[str, Any]:
        scheduler = self.pipe.scheduler
        editing = self.setting("editing_threshold")
        out = {
            "seed": self.seed,
            "top_k": self.top_k,
            "sampler": type(scheduler).__name__,
            "scheduler_config": {k: v for k, v in dict(scheduler.config).items()
                                 if not k.startswith("_")},
            "block_length": self.block_length,
            "max_denoising_steps": int(scheduler.num_inference_steps),
            **{k: self.setting(k) for k in (
                "gen_length", "num_inference_steps", "temperature", "top_p", "sampling_method",
                "threshold", "editing_threshold", "max_post_steps", "minimal_topk",
                "eos_early_stop")},
            "sampling_top_k": self.setting("top_k"),
            "editing": editing is not None and editing > 0.0,
            "mask_token_id": self.mask_token_id,
            "eos_token_id": (self.setting("eos_token_id") if self.setting("eos_token_id")
                             is not None else self.pipe.eos_token_id),
            "forward_passes": self.forward_passes,
        }
        return out

    def snapshot(self) -> Trace:
        trace = super().snapshot()
        trace.meta.update(self.family_meta())
        return trace

    def finish(self, *, complete, output=None) -> Trace:
        if self.prompt_ids is None:
            raise RuntimeError("The pipeline stopped before it tokenized the prompt.")
        sequences = None
        if output is not None:
            sequences = output.sequences if hasattr(output, "sequences") else output[0]
        output_ids = (sequences.detach().cpu().numpy() if sequences is not None
                      else np.zeros((1, 0), np.int64))
        stop = self.stack("stop", bool)
        if complete and self.window >= 0:
            early = [*self.early, self.mask_steps < self.pipe.scheduler.num_inference_steps]
            canvases = np.array([m[0] for m in self.step_meta], dtype=np.int64)
            for c, ended_early in enumerate(early):
                stop[:, np.flatnonzero(canvases == c)[-1]] = ended_early
        eos = self.settings()["eos_token_id"]
        generated = output_ids.shape[1]
        if eos is not None and output_ids.size and (output_ids[0] == eos).any():
            generated = int(np.flatnonzero(output_ids[0] == eos)[0]) + 1
        tpf = np.array([generated / self.forward_passes if self.forward_passes else math.nan])
        meta = {"complete": complete, **self.family_meta(), "settings": self.settings(),
                **_model_facts(self.model, self.block_length)}
        trace = self.build(output_ids=output_ids, tokens_per_forward=tpf, meta=meta,
                           overrides={"stop": stop})
        # the text as the pipeline decodes it: up to the first eos
        trace.meta["text"] = self.tokenizer.batch_decode(
            [output_ids[0, :generated]], skip_special_tokens=True)
        return trace


def _sampling_logits(scheduler: Any, logits: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """The logits ``BlockRefinementScheduler.step`` sampled from: raw when greedy, else divided
    by the temperature and through its top-k / top-p filters (its own helpers)."""
    temperature = float(kwargs.get("temperature") or 0.0)
    method = kwargs.get("sampling_method", "auto")
    multinomial = method == "multinomial" or (method == "auto" and temperature != 0.0)
    if temperature == 0.0 or not multinomial:
        return logits
    scaled = logits / temperature if temperature != 1.0 else logits
    top_k_filter = getattr(scheduler, "_top_k_filtering", None)
    top_p_filter = getattr(scheduler, "_top_p_filtering", None)
    if top_k_filter is not None:
        scaled = top_k_filter(scaled, top_k=kwargs.get("top_k"))
    if top_p_filter is not None:
        scaled = top_p_filter(scaled, top_p=kwargs.get("top_p"))
    return scaled


def _model_facts(model: Any, block_length: int) -> dict[str, Any]:
    """What every trace keeps about its model (as `model_access.model_facts` does for
    DiffusionGemma): sizes, versions and a config digest."""
    import transformers

    from .. import __version__

    config = model.config
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    config_json = (config.to_json_string(use_diff=False) if hasattr(config, "to_json_string")
                   else repr(config))
    versions = {"dgviz": __version__, "transformers": transformers.__version__,
                "torch": torch.__version__}
    with contextlib.suppress(PackageNotFoundError):
        versions["diffusers"] = package_version("diffusers")
    return {
        "model": {
            "class": type(model).__name__,
            "name_or_path": getattr(config, "_name_or_path", ""),
            "canvas_length": block_length,
            "vocab_size": getattr(text, "vocab_size", None),
            "num_layers": getattr(text, "num_hidden_layers", None),
            "config_digest": hashlib.sha256(config_json.encode()).hexdigest()[:16],
        },
        "num_experts": getattr(text, "num_experts", None),
        "top_k_experts": getattr(text, "num_experts_per_tok", None),
        "versions": versions,
    }
