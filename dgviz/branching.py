"""Branch a recorded run: replay it exactly up to a step, then change it and let it resume.

``dgviz.branch(model, tokenizer, trace, step, edits={position: token})`` runs transformers' own
``generate`` again with the trace's prompt, seed and settings. Every step before ``step`` comes
out exactly as recorded (same seed, same random draws); at ``step`` the canvas the decoder reads
holds the edited tokens, and from there to the end of that canvas they are held: sampled,
accepted and never re-noised (`dgviz.recording.holds`). Settings given as keywords (the entropy
bound, the temperatures, the stop thresholds) change from ``step`` on. The new trace says where it
forked (``trace.fork``), so views can mark it and compare it with its parent.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .trace import Trace

__all__ = ["branch"]

# settings a trace records that generate takes back as keywords to replay the run
_REPLAYED = ("max_new_tokens", "max_denoising_steps", "t_min", "t_max", "stability_threshold",
             "confidence_threshold", "eos_token_id", "pad_token_id")
# keywords a recorded run may have been given and still be replayed from its settings
_REPLAYABLE = {*_REPLAYED, "entropy_bound", "sampler_config", "attention_mask",
               "disable_compile"}


def branch(model: Any, tokenizer: Any, trace: Trace, step: int,
           edits: Mapping[int, int | str] | None = None, *, row: int = 0,
           sampler: Callable[[Any, Any], Any] | None = None,
           on_step: Callable | None = None, **generate_kwargs: Any) -> Trace:
    """Replay ``trace`` up to global step ``step``, edit its canvas there, and resume.

    Parameters
    ----------
    model, tokenizer:
        The model and tokenizer that recorded ``trace`` (a ``DiffusionGemmaForBlockDiffusion``).
    trace:
        A trace recorded with ``seed=`` by `dgviz.record` (or by an earlier `branch`).
    step:
        A global step index of ``trace`` (``0 .. trace.num_steps - 1``): the first step that
        differs.
    edits:
        ``{position: token}``, positions within that step's canvas (``0 .. L-1``), tokens as ids
        or as text that is exactly one token. The decoder reads them at ``step`` and they are
        held to the end of the canvas. ``None``: no edit (with no settings either, the very same
        run comes back).
    row:
        The batch row the edits apply to (the whole batch is replayed, as recorded).
    sampler:
        The same custom sampler factory the run was recorded with, if it used one.
    on_step:
        As in `dgviz.record` (live views).
    **generate_kwargs:
        Settings that change from ``step`` on: ``entropy_bound``, ``t_min``, ``t_max``,
        ``stability_threshold``, ``confidence_threshold``.

    Returns
    -------
    Trace
        The branch. Its steps before ``step`` equal the parent's (a warning says so when they
        do not: another model with the same sizes, another sampler, or a device that does not
        compute the same numbers twice); ``trace.fork`` holds the parent's `Trace.run_id`, the
        step, the row, the edits and the changed settings.
    """
    from .recording.arguments import check_on_step

    check_on_step(on_step)
    return prepare_branch(model, tokenizer, trace, step, edits, row=row, sampler=sampler,
                          **generate_kwargs)(on_step)


def prepare_branch(model: Any, tokenizer: Any, trace: Trace, step: int,
                   edits: Mapping[int, int | str] | None = None, *, row: int = 0,
                   sampler: Callable[[Any, Any], Any] | None = None,
                   **generate_kwargs: Any) -> Callable[[Callable | None], Trace]:
    """Every check of `branch`, and no model work: returns ``run(on_step) -> Trace``, which
    replays and resumes. A live view checks first, then runs in its thread."""
    from .recording.arguments import as_float, as_int
    from .recording.holds import FORK_SETTINGS, Fork, Hold, resolve_token
    from .recording.model_access import check_model, is_pipeline, model_facts
    from .recording.transformers_loop import record_generate

    if not isinstance(trace, Trace):
        raise TypeError(f"branch() needs the dgviz.Trace to branch from, got "
                        f"{type(trace).__name__}.")
    if is_pipeline(model) or trace.meta.get("source", "transformers") != "transformers":
        raise NotImplementedError(
            "branch() replays transformers' DiffusionGemmaForBlockDiffusion.generate; runs of "
            "diffusers pipelines (DiffusionGemmaPipeline, LLaDA2Pipeline) cannot be branched.")
    check_model(model)
    _check_same_model(trace, model_facts(model))
    settings = trace.settings
    seed = settings.get("seed")
    if seed is None:
        raise ValueError("This trace was recorded without a seed, so its random draws cannot be "
                         "replayed: record it again with dgviz.record(..., seed=0) and branch "
                         "that trace.")
    if trace.meta.get("row_of_batch", [0, 1])[1] != 1:
        raise NotImplementedError(
            "This trace is one row of a batch run (Trace.row): the batch drew its random tokens "
            "together, so branch the whole batch trace and pick the row with row=.")
    if trace.num_steps == 0:
        raise ValueError("This trace has no steps to branch from.")
    step = as_int("step", step, low=0, high=trace.num_steps - 1,
                  hint=" (a global step index of the trace)")
    trace.check_row(row)
    not_replayable = sorted(set(trace.meta.get("generate_kwargs", [])) - _REPLAYABLE)
    if not_replayable:
        raise NotImplementedError(
            f"This run was recorded with {', '.join(not_replayable)}=, which a trace does not "
            "keep, so branch() cannot replay it.")
    custom = settings.get("sampler") not in (None, "EntropyBoundSampler")
    if custom and sampler is None:
        raise TypeError(f"This run used the custom sampler {settings.get('sampler')}: pass the "
                        "same factory as sampler= to replay it.")
    if not custom and sampler is not None:
        raise TypeError("This run used transformers' own EntropyBoundSampler: branch it without "
                        "sampler= (a branch replays the run it comes from; record a new run to "
                        "try another sampler).")

    overrides: dict[str, Any] = {}
    for name, value in generate_kwargs.items():
        if name not in FORK_SETTINGS:
            from .recording.arguments import unknown_keyword

            err = unknown_keyword(name, FORK_SETTINGS, "dgviz.branch()")
            raise TypeError(f"{err} Other settings cannot change in the middle of a run: record "
                            "a new run with dgviz.record(...) instead.")
        if name == "entropy_bound" and custom:
            raise TypeError("entropy_bound= applies to the default entropy-bound sampler; this "
                            "run used a custom sampler.")
        if name in ("stability_threshold", "confidence_threshold") and settings.get(name) is None:
            raise ValueError(f"{name}= cannot be set from the fork on: the run had the adaptive "
                             "stop off (record a new run to turn it on).")
        if name == "stability_threshold":
            overrides[name] = as_int(name, value, low=0)
        else:
            overrides[name] = as_float(name, value, low=0.0, strict=name != "confidence_threshold")
    in_force = {**trace.settings_at(step), **overrides}
    t_min, t_max = in_force.get("t_min"), in_force.get("t_max")
    if t_min is not None and t_max is not None and t_max < t_min:
        raise ValueError(f"From step {step} on t_max would be {t_max} and t_min {t_min}: the "
                         "temperature would rise as the canvas is denoised. Give t_max >= t_min.")

    canvas = int(trace.step_canvas[step])
    length = trace.canvas_length
    vocab = int(trace.meta.get("model", {}).get("vocab_size") or model.config.vocab_size)
    if edits is not None and not isinstance(edits, Mapping):
        raise TypeError(f"edits must be a dict {{position: token}} (got {type(edits).__name__}).")
    resolved = {}
    for position, token in (edits or {}).items():
        p = as_int("edit position", position, low=0, high=length - 1,
                   hint=f" (a position within the step's canvas, 0..{length - 1})")
        resolved[p] = resolve_token(tokenizer, token, vocab, f"edits[{p}]")
    if resolved and not trace.active[row, step]:
        raise ValueError(
            f"Batch row {row} was not denoising at step {step} (its canvas had stopped while "
            "other rows went on): an edit there would change nothing. Branch at a step where "
            f"trace.active[{row}, step] is True.")
    # what the parent did before the fork is replayed; what it changed from the fork on is not
    row_of_edit = row if trace.batch_size > 1 else None
    holds = [Hold(**h) for h in trace.held_tokens()
             if h["from_step"] is None or h["from_step"] < step]
    holds += [Hold(canvas=canvas, position=p, token=t, row=row_of_edit, from_step=step)
              for p, t in resolved.items()]
    changes = [c for c in trace.meta.get("changes", []) if c["step"] < step]
    if overrides:
        changes.append({"step": step, "settings": overrides})
    fork = Fork(step=step, holds=holds, changes=changes, meta={
        "parent": trace.run_id, "step": step, "canvas": canvas, "row": row,
        "edits": {str(p): t for p, t in resolved.items()}, "settings": overrides})

    replay = {name: settings[name] for name in _REPLAYED if name in settings}
    if not custom and settings.get("entropy_bound") is not None:
        replay["entropy_bound"] = float(settings["entropy_bound"])
    ids, mask = _prompt(trace)
    if mask is not None:
        replay["attention_mask"] = mask

    def run(on_step: Callable | None = None) -> Trace:
        child = record_generate(model, tokenizer, ids, seed=int(seed),
                                top_k=int(trace.topk_ids.shape[3]), routing=trace.has_routing,
                                on_step=on_step, sampler=sampler, fork=fork, **replay)
        diverged = _first_difference(trace, child, step)
        if diverged is not None:
            warnings.warn(
                f"The branch's replay differs from the recorded run at step {diverged}, before "
                f"the fork at step {step}: its steps before the fork are not the parent's. "
                "Another model with the same sizes (other weights), another sampler, or a "
                "device that does not compute the same numbers twice does this; branch with "
                "the model, tokenizer and sampler that recorded the trace.", stacklevel=3)
        return child

    return run


def _first_difference(parent: Trace, child: Trace, step: int) -> int | None:
    """The first step before ``step`` at which ``child`` drew or kept other tokens than
    ``parent`` (None: the replay was exact)."""
    n = min(step, child.num_steps)
    for s in range(n):
        if any(not np.array_equal(getattr(parent, name)[:, s], getattr(child, name)[:, s])
               for name in ("canvas_in", "sampled", "draft", "accepted", "active")):
            return s
    return None if child.num_steps >= step else child.num_steps


def _check_same_model(trace: Trace, facts: dict[str, Any]) -> None:
    recorded, now = trace.meta.get("model", {}), facts["model"]
    for key in ("canvas_length", "vocab_size", "num_layers"):
        if recorded.get(key) is not None and recorded[key] != now[key]:
            raise ValueError(f"This trace was recorded with another model ({key} "
                             f"{recorded[key]}, this model has {now[key]}): branch it with the "
                             "model that recorded it.")


def _prompt(trace: Trace):
    """The prompt ids and attention mask as recorded."""
    import torch

    ids = torch.as_tensor(trace.prompt_ids, dtype=torch.long)
    mask = trace.meta.get("attention_mask")
    return ids, None if mask is None else torch.as_tensor(mask, dtype=torch.long)
