"""Step schedules: named sets of sampler settings to record and compare (`dgviz.comparison.sweep`).

A `Schedule` is one way of running DiffusionGemma's denoising loop. It is one of three kinds:

``"transformers"``
    Keyword arguments for transformers' own ``model.generate``: ``max_denoising_steps``,
    ``sampler_config=EntropyBoundSamplerConfig(entropy_bound=...)``, the linear temperature
    schedule ``t_min``/``t_max`` (temperature ``t_min + (t_max - t_min) * remaining / N``), and the
    adaptive stop ``stability_threshold``/``confidence_threshold`` (both ``None``: no early stop).
``"sampler"``
    The same generate loop with a custom acceptance rule plugged in through
    ``dgviz.record(sampler=...)``. transformers ships only the entropy-bound rule; the two rules
    here (`FixedRateSampler`, `CosineSampler`) are the classic alternatives, kept small.
``"diffusers"``
    A diffusers scheduler (`EntropyBoundScheduler`, `DiscreteDDIMScheduler` with or without
    ``corrector_steps``, `BlockRefinementScheduler`) run by diffusers' `DiffusionGemmaPipeline`
    around the same model, with pipeline call arguments (``num_inference_steps``, ``temperature``,
    stopping thresholds).

`presets` returns a set of schedules that really differ (few vs many steps, loose vs tight
bound, hot vs cold temperature, fixed and cosine commit rules, each diffusers scheduler); see
docs/compare.md for what each one means.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .recording.samplers import CommitSampler

__all__ = [
    "CosineSampler",
    "FixedRateSampler",
    "Schedule",
    "as_schedule",
    "diffusers_unavailable",
    "presets",
]

# ============================================================================ custom samplers
class FixedRateSampler(CommitSampler):
    """Commit a fixed number of tokens per step: ``tokens_per_step`` lowest-entropy positions.

    After step ``i`` of a canvas, ``min(L, tokens_per_step * i)`` positions are committed, so a
    canvas of ``L`` positions is fully committed after ``ceil(L / tokens_per_step)`` steps (set
    ``max_denoising_steps`` at least that high). Use with ``dgviz.record(sampler=...)`` through
    ``FixedRateSampler.factory(k)``, or a `Schedule` (``Schedule.fixed_rate``).
    """

    name = "fixed-rate"

    def __init__(self, generation_config: Any, model: Any, tokens_per_step: int = 1):
        super().__init__(generation_config, model)
        if not isinstance(tokens_per_step, int) or tokens_per_step < 1:
            raise ValueError(f"tokens_per_step must be an integer >= 1 (got {tokens_per_step!r}).")
        self.tokens_per_step = tokens_per_step

    def budget(self, step: int) -> int:
        return min(self.canvas_length, self.tokens_per_step * step)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tokens_per_step": self.tokens_per_step}

    @classmethod
    def factory(cls, tokens_per_step: int) -> Callable[[Any, Any], FixedRateSampler]:
        """``sampler(generation_config, model)`` for ``dgviz.record(sampler=...)``."""
        if not isinstance(tokens_per_step, int) or tokens_per_step < 1:
            raise ValueError(f"tokens_per_step must be an integer >= 1 (got {tokens_per_step!r}).")
        return _Factory(cls, tokens_per_step=tokens_per_step)


class CosineSampler(CommitSampler):
    """Commit on a cosine schedule (MaskGIT's): few tokens first, most at the end.

    After step ``i`` of ``N = max_denoising_steps``, ``ceil(L * (1 - cos(pi/2 * i/N)))``
    positions are committed (lowest entropy first): all ``L`` at step ``N``. Only 0.5% of the
    canvas is committed after the first of 16 steps, 29% at the halfway point. With the adaptive
    stop on, a confident canvas may stop before step ``N``.
    """

    name = "cosine"

    def budget(self, step: int) -> int:
        done = min(step, self.max_denoising_steps) / self.max_denoising_steps
        frac = 1.0 - math.cos(math.pi / 2 * done)
        return min(self.canvas_length, math.ceil(self.canvas_length * frac - 1e-9))

    @classmethod
    def factory(cls) -> Callable[[Any, Any], CosineSampler]:
        return _Factory(cls)


@dataclass(frozen=True)
class _Factory:
    """A picklable, printable ``sampler(generation_config, model)`` callable."""

    cls: type
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, cls: type, **kwargs: Any):
        object.__setattr__(self, "cls", cls)
        object.__setattr__(self, "kwargs", dict(kwargs))

    def __call__(self, generation_config: Any, model: Any) -> Any:
        return self.cls(generation_config, model, **self.kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.cls.__name__}.factory({args})"


# ============================================================================ the Schedule
@dataclass
class Schedule:
    """One named way to run the denoising loop; record it with `Schedule.record`.

    Build one with the class methods (`transformers`, `fixed_rate`, `cosine`, `diffusers`) or
    directly:

    - ``kwargs``: for ``"transformers"``/``"sampler"`` schedules, keyword arguments for
      ``model.generate`` (through ``dgviz.record``); for ``"diffusers"``, pipeline call
      arguments (``num_inference_steps``, ``temperature``, ``stability_threshold``, ...).
    - ``sampler``: a ``sampler(generation_config, model)`` factory (``"sampler"`` kind).
    - ``scheduler``: a diffusers scheduler, or a zero-argument callable returning one
      (``"diffusers"`` kind). Each run gets a fresh copy, so no state leaks between runs.
    """

    name: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    sampler: Callable[[Any, Any], Any] | None = None
    scheduler: Any = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.sampler is not None and self.scheduler is not None:
            raise ValueError(
                f"Schedule {self.name!r}: give a custom sampler (transformers' generate loop) or "
                "a diffusers scheduler (the diffusers pipeline), not both."
            )
        if self.sampler is not None and not callable(self.sampler):
            raise TypeError(
                "Schedule.sampler must be a callable sampler(generation_config, model).")
        self.kwargs = dict(self.kwargs)
        for bad in ("seed", "sampler", "prompt", "return_dict_in_generate"):
            if bad in self.kwargs:
                raise ValueError(
                    f"Schedule {self.name!r}: {bad!r} is not a schedule setting "
                    + ("(seeds are given to the sweep)." if bad == "seed"
                       else "(pass it separately).")
                )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def transformers(
        cls,
        name: str = "",
        *,
        steps: int | None = None,
        entropy_bound: float | None = None,
        t_min: float | None = None,
        t_max: float | None = None,
        stability_threshold: int | str | None = "default",
        confidence_threshold: float | str | None = "default",
        adaptive_stop: bool = True,
        description: str = "",
        **generate_kwargs: Any,
    ) -> Schedule:
        """transformers' own sampler (`EntropyBoundSampler`) with these settings.

        Unset settings keep the model's generation config (or transformers' defaults: 48
        steps, bound 0.1, t 0.8 -> 0.4, stop after 1 stable step with mean entropy < 0.005).
        ``adaptive_stop=False`` turns the early stop off: every canvas takes ``steps`` steps.
        """
        kw = dict(generate_kwargs)
        if steps is not None:
            kw["max_denoising_steps"] = steps
        if entropy_bound is not None:
            from transformers import EntropyBoundSamplerConfig

            kw["sampler_config"] = EntropyBoundSamplerConfig(entropy_bound=float(entropy_bound))
        if t_min is not None:
            kw["t_min"] = t_min
        if t_max is not None:
            kw["t_max"] = t_max
        _stop_kwargs(kw, stability_threshold, confidence_threshold, adaptive_stop)
        return cls(name=name, kwargs=kw, description=description)

    @classmethod
    def fixed_rate(cls, name: str = "", *, tokens_per_step: int, steps: int | None = None,
                   adaptive_stop: bool = True, description: str = "",
                   **generate_kwargs: Any) -> Schedule:
        """`FixedRateSampler` in transformers' loop; ``steps`` defaults to ``ceil(L/k)`` per canvas
        (taken from the model when recorded) so every position gets committed."""
        kw = dict(generate_kwargs)
        if steps is not None:
            kw["max_denoising_steps"] = steps
        _stop_kwargs(kw, "default", "default", adaptive_stop)
        return cls(name=name, kwargs=kw, sampler=FixedRateSampler.factory(tokens_per_step),
                   description=description)

    @classmethod
    def cosine(cls, name: str = "", *, steps: int, adaptive_stop: bool = True,
               description: str = "", **generate_kwargs: Any) -> Schedule:
        """`CosineSampler` in transformers' loop, over ``steps`` steps per canvas."""
        kw = {**generate_kwargs, "max_denoising_steps": steps}
        _stop_kwargs(kw, "default", "default", adaptive_stop)
        return cls(name=name, kwargs=kw, sampler=CosineSampler.factory(), description=description)

    @classmethod
    def diffusers(cls, name: str = "", scheduler: Any = None, *, steps: int | None = None,
                  description: str = "", **call_kwargs: Any) -> Schedule:
        """A diffusers scheduler run by `DiffusionGemmaPipeline`; ``steps`` is
        ``num_inference_steps``; other keywords go to the pipeline call (``temperature``,
        ``stability_threshold``, ``confidence_threshold``, ...)."""
        if scheduler is None:
            raise ValueError(
                "Schedule.diffusers needs a diffusers scheduler (or a factory for one).")
        kw = dict(call_kwargs)
        if steps is not None:
            kw["num_inference_steps"] = steps
        return cls(name=name, kwargs=kw, scheduler=scheduler, description=description)

    # ------------------------------------------------------------------ facts
    @property
    def kind(self) -> str:
        """``"transformers"``, ``"sampler"`` or ``"diffusers"``."""
        if self.scheduler is not None:
            return "diffusers"
        return "sampler" if self.sampler is not None else "transformers"

    def new_scheduler(self) -> Any:
        """A fresh diffusers scheduler for one run (``"diffusers"`` schedules)."""
        sched = self.scheduler
        if sched is None:
            raise ValueError(f"Schedule {self.name!r} is not a diffusers schedule.")
        if hasattr(sched, "config") and hasattr(type(sched), "from_config"):
            return type(sched).from_config(sched.config)
        if isinstance(sched, type) or callable(sched):
            made = sched()
            if not hasattr(made, "step"):
                raise TypeError(f"Schedule {self.name!r}: the scheduler factory returned {made!r}.")
            return made
        return copy.deepcopy(sched)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for comparison bundles and tables)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind,
                               "description": self.description}
        out["kwargs"] = {k: _jsonable(v) for k, v in self.kwargs.items()}
        if self.sampler is not None:
            out["sampler"] = repr(self.sampler)
        if self.scheduler is not None:
            sched = self.scheduler
            if hasattr(sched, "config"):
                out["scheduler"] = type(sched).__name__
                out["scheduler_config"] = {k: _jsonable(v) for k, v in dict(sched.config).items()
                                           if not k.startswith("_")}
            else:
                out["scheduler"] = repr(sched)
        return out

    def __repr__(self) -> str:
        parts = [f"{k}={_jsonable(v)!r}" for k, v in self.kwargs.items()]
        if self.sampler is not None:
            parts.append(f"sampler={self.sampler!r}")
        if self.scheduler is not None:
            sched = self.scheduler
            conf = ""
            if hasattr(sched, "config"):
                conf = "(" + ", ".join(f"{k}={v!r}" for k, v in dict(sched.config).items()
                                       if not k.startswith("_")) + ")"
            parts.append(f"scheduler={getattr(type(sched), '__name__', sched)}{conf}")
        return f"Schedule({self.name!r}, {self.kind}: {', '.join(parts)})"

    # ------------------------------------------------------------------ running
    def record(self, model: Any, tokenizer: Any, prompt: Any, *, seed: int | None,
               max_new_tokens: int | None = None, top_k: int = 5, routing: bool = True,
               on_step: Callable | None = None) -> Any:
        """Record one run of this schedule (`dgviz.record`) and return its `Trace`.

        ``model`` is a ``DiffusionGemmaForBlockDiffusion`` (diffusers schedules wrap it in a
        ``DiffusionGemmaPipeline`` with ``tokenizer`` as the processor) or a pipeline (its
        model and processor are used). ``max_new_tokens`` applies unless the schedule sets its
        own length (``gen_length`` for diffusers, and for a LLaDA2 pipeline).
        """
        from .recording import record
        from .recording.llada2_loop import is_llada2_pipeline

        model, tokenizer = _unwrap(model, tokenizer)
        kw = dict(self.kwargs)
        if self.kind == "diffusers":
            pipe = _pipeline(model, tokenizer, self.new_scheduler())
            if max_new_tokens is not None:
                kw.setdefault("gen_length", max_new_tokens)
            else:
                kw.setdefault("gen_length", _default_length(model))
            trace = record(pipe, None, prompt, seed=seed, top_k=top_k, routing=routing,
                           on_step=on_step, **kw)
        else:
            if max_new_tokens is not None:  # LLaDA2's pipeline calls the length gen_length
                length = "gen_length" if is_llada2_pipeline(model) else "max_new_tokens"
                kw.setdefault(length, max_new_tokens)
            if self.kind == "sampler" and "max_denoising_steps" not in kw:
                rate = getattr(self.sampler, "kwargs", {}).get("tokens_per_step")
                if rate:
                    kw["max_denoising_steps"] = math.ceil(model.config.canvas_length / rate)
            trace = record(model, tokenizer, prompt, seed=seed, top_k=top_k, routing=routing,
                           on_step=on_step, sampler=self.sampler, **kw)
        trace.meta["schedule"] = self.to_dict()
        return trace


def _stop_kwargs(kw: dict, stability: Any, confidence: Any, adaptive_stop: bool) -> None:
    if not adaptive_stop:
        kw["stability_threshold"] = None
        kw["confidence_threshold"] = None
        return
    if stability != "default":
        kw["stability_threshold"] = stability
    if confidence != "default":
        kw["confidence_threshold"] = None if confidence is None else float(confidence)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "entropy_bound"):
        return {"entropy_bound": float(value.entropy_bound)}
    return repr(value)


def _unwrap(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    """A diffusers pipeline stands for its model and processor."""
    if type(model).__name__ == "DiffusionGemmaPipeline":
        return model.model, tokenizer if tokenizer is not None else model.processor
    return model, tokenizer


def _default_length(model: Any) -> int:
    gen = getattr(model, "generation_config", None)
    n = getattr(gen, "max_new_tokens", None) if gen is not None else None
    return int(n) if n else 256


def _pipeline(model: Any, tokenizer: Any, scheduler: Any) -> Any:
    try:
        from diffusers import DiffusionGemmaPipeline
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "diffusers schedules need diffusers (pip install 'dgviz[diffusers]')."
        ) from err
    pipe = DiffusionGemmaPipeline(model=model, scheduler=scheduler, processor=tokenizer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def as_schedule(name: str, value: Any) -> Schedule:
    """Turn what `sweep` accepts into a `Schedule`.

    ``value`` is a `Schedule` (renamed to ``name`` if it has no name), a dict of generate
    keyword arguments (``{"max_denoising_steps": 8, "entropy_bound": 0.5}``: ``entropy_bound``
    becomes the ``sampler_config``; a ``"sampler"`` key is a custom sampler factory; a
    ``"scheduler"`` key a diffusers scheduler), a diffusers scheduler, or ``None`` (the model's
    defaults).
    """
    if isinstance(value, Schedule):
        if not value.name:
            value = copy.copy(value)
            value.name = name
        return value
    if value is None:
        return Schedule(name=name)
    if hasattr(value, "step") and hasattr(value, "set_timesteps"):  # a diffusers scheduler
        return Schedule.diffusers(name, value)
    if isinstance(value, Mapping):
        kw = dict(value)
        sampler = kw.pop("sampler", None)
        scheduler = kw.pop("scheduler", None)
        description = kw.pop("description", "")
        if scheduler is not None:
            return Schedule.diffusers(name, scheduler, description=description, **kw)
        bound = kw.pop("entropy_bound", None)
        if bound is not None:
            from transformers import EntropyBoundSamplerConfig

            kw["sampler_config"] = EntropyBoundSamplerConfig(entropy_bound=float(bound))
        return Schedule(name=name, kwargs=kw, sampler=sampler, description=description)
    raise TypeError(
        f"Schedule {name!r}: expected a dgviz Schedule, a dict of generate settings, a diffusers "
        f"scheduler or None, got {type(value).__name__}."
    )


# ============================================================================ presets
def presets(*, diffusers: bool = True, steps: int = 48) -> dict[str, Schedule]:
    """Schedules that really differ, by label (see docs/compare.md).

    ``steps`` is the budget of the "many steps" schedules (transformers' default is 48). Pick a
    few for a sweep (``{k: p[k] for k in (...)}``): each costs one run per seed.

    The diffusers schedules (``"ddim"``, ``"block refinement"``, ...) are included when
    ``diffusers`` is True and diffusers' pipeline can run here; `diffusers_unavailable` says
    why not otherwise (e.g. diffusers 0.42 with transformers >= 5.24).
    """
    few = max(2, steps // 12)
    out = {
        "default": Schedule.transformers(
            "default", description="the model's generation config (transformers' defaults: "
            "entropy bound 0.1, t 0.8->0.4, adaptive stop after 1 stable step with mean entropy "
            "< 0.005; a checkpoint may set others)."),
        "few steps": Schedule.transformers(
            "few steps", steps=few,
            description=f"at most {few} steps per canvas; whatever is left is the argmax draft."),
        "many steps, no stop": Schedule.transformers(
            "many steps, no stop", steps=steps, adaptive_stop=False,
            description=f"all {steps} steps per canvas: the adaptive stop is off."),
        "tight bound": Schedule.transformers(
            "tight bound", entropy_bound=0.01,
            description="entropy bound 0.01: accepts one or two near-certain tokens per step."),
        "loose bound": Schedule.transformers(
            "loose bound", entropy_bound=4.0,
            description="entropy bound 4.0: accepts most of the canvas at once."),
        "cold": Schedule.transformers(
            "cold", t_min=0.05, t_max=0.2,
            description="temperature 0.2->0.05: near-greedy sampling, low entropy, quick accepts."),
        "hot": Schedule.transformers(
            "hot", t_min=0.8, t_max=1.6,
            description="temperature 1.6->0.8: noisy samples, higher entropy, slower accepts."),
        "fixed 2/step": Schedule.fixed_rate(
            "fixed 2/step", tokens_per_step=2,
            description="custom rule: commit the 2 lowest-entropy positions per step, never "
            "take them back (L/2 steps per canvas)."),
        "cosine": Schedule.cosine(
            "cosine", steps=max(4, steps // 3),
            description="custom rule: commit on MaskGIT's cosine schedule over "
            f"{max(4, steps // 3)} steps (few first, most at the end)."),
    }
    if diffusers and diffusers_unavailable() is None:
        import diffusers as _d

        n = max(4, steps // 3)
        out.update({
            "diffusers entropy bound": Schedule.diffusers(
                "diffusers entropy bound", _d.EntropyBoundScheduler(entropy_bound=0.1),
                steps=steps,
                description="diffusers' EntropyBoundScheduler (bound 0.1, t 0.8->0.4)."),
            "ddim": Schedule.diffusers(
                "ddim", _d.DiscreteDDIMScheduler(), steps=n,
                description=f"diffusers' DiscreteDDIMScheduler, ancestral, {n} steps, greedy."),
            "ddim + corrector": Schedule.diffusers(
                "ddim + corrector", _d.DiscreteDDIMScheduler(corrector_steps=1), steps=n,
                description=f"DiscreteDDIM with one predictor-corrector sweep per step ({n} steps; "
                "each corrector sweep is one more forward pass)."),
            "block refinement": Schedule.diffusers(
                "block refinement", _d.BlockRefinementScheduler(threshold=0.9), steps=n,
                description=f"diffusers' BlockRefinementScheduler: commits L/{n} per step plus "
                "any token above 0.9 confidence."),
            "block refinement, 4 steps": Schedule.diffusers(
                "block refinement, 4 steps",
                _d.BlockRefinementScheduler(threshold=1.0), steps=4,
                description="BlockRefinementScheduler's quota only (threshold off): a quarter of "
                "the canvas committed per step, 4 steps."),
        })
    return out


def diffusers_unavailable() -> str | None:
    """Why the diffusers schedules cannot run here (not installed, or installed beside a
    transformers it does not support), or None when they can."""
    from .recording.diffusers_loop import diffusers_incompatibility

    return diffusers_incompatibility()

