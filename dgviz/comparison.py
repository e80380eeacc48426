"""Compare step schedules side by side: `sweep` records them, `compare` collects traces.

``sweep(model, tokenizer, prompt, schedules={label: settings}, seeds=[0, 1, 2], score=...)``
records every schedule with every seed, seed by seed (all schedules of seed 0, then seed 1, ...),
so runs are paired: the same seed gives every schedule the same initial noise and random stream,
and what differs between paired runs comes from the schedule. It shows a progress bar; Ctrl-C
(or the notebook's stop button) stops it and keeps the finished runs.

The `Comparison` it returns has:

- `Comparison.summary`: a pandas DataFrame, one row per run (columns in `SUMMARY_COLUMNS`);
- `Comparison.table`: the same averaged over seeds, one row per schedule, with its Pareto flag;
- figures (plotly; colours from `dgviz.palette`): `convergence_figure`, `accepted_figure`,
  `pareto_figure`;
- `Comparison.widget()`: the runs' canvases replayed together on one shared timeline;
- `Comparison.save(dir)` / `load_comparison(dir)`: a folder of ``.dgtrace`` files and an
  ``index.json`` (no pickle).
"""

from __future__ import annotations

import html
import json
import math
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .palette import label_color  # noqa: F401 (dgviz.comparison.label_color, as before)
from .schedules import as_schedule
from .trace import Trace
from .trace_stats import (  # noqa: F401 (dgviz.comparison.<name>, as documented)
    generated_positions,
    lock_fraction_curve,
    mean_final_confidence,
    prediction_lock_in,
    steps_to_lock,
    token_agreement,
)
from .tracefile import load_trace

__all__ = [
    "SUMMARY_COLUMNS",
    "Comparison",
    "Run",
    "compare",
    "load_comparison",
    "sweep",
]

BUNDLE_FORMAT = "dgviz-comparison"
BUNDLE_VERSION = 1

#: The columns of `Comparison.summary`, in order.
SUMMARY_COLUMNS = (
    "label", "seed", "kind", "family", "sampler", "complete", "canvases", "steps", "forward_passes",
    "forward_passes_per_canvas", "tokens", "tokens_per_forward", "wall_seconds",
    "tokens_per_second", "accepted_per_step", "max_accepted_per_step", "mean_final_confidence",
    "steps_to_50", "steps_to_90", "steps_to_100", "agreement", "score", "text",
)


# ============================================================================ runs and comparisons
@dataclass
class Run:
    """One recorded run in a comparison."""

    label: str
    trace: Trace
    seed: int | None = None
    wall_seconds: float = math.nan
    score: float | None = None
    schedule: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.trace.text[0] if self.trace.text else ""


class Comparison:
    """Runs of several schedules (and seeds), with their summary, figures and a synced view."""

    def __init__(self, runs: Sequence[Run], *, reference: str | None = None, complete: bool = True):
        self.runs: list[Run] = list(runs)
        labels = self.labels
        if reference is not None and reference not in labels:
            raise ValueError(f"reference {reference!r} is not one of the labels {labels}.")
        self.reference = reference if reference is not None else (labels[0] if labels else None)
        self.complete = complete
        """False when the sweep was interrupted: only the finished runs are here."""

    # ------------------------------------------------------------------ access
    @property
    def labels(self) -> list[str]:
        """Schedule labels in first-seen order."""
        return list(dict.fromkeys(r.label for r in self.runs))

    @property
    def seeds(self) -> list[int | None]:
        return list(dict.fromkeys(r.seed for r in self.runs))

    @property
    def traces(self) -> list[Trace]:
        return [r.trace for r in self.runs]

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self):
        return iter(self.runs)

    def __getitem__(self, key: int | tuple[str, Any]) -> Run:
        """``comparison[i]`` or ``comparison[label, seed]``."""
        if isinstance(key, tuple):
            label, seed = key
            for r in self.runs:
                if r.label == label and r.seed == seed:
                    return r
            raise KeyError(f"no run {label!r} with seed {seed!r}")
        return self.runs[key]

    def __repr__(self) -> str:
        state = "" if self.complete else ", INTERRUPTED"
        return (f"<Comparison {len(self.runs)} runs: {len(self.labels)} schedule(s) x "
                f"{len(self.seeds)} seed(s){state}>")

    def _reference_run(self, run: Run) -> Run | None:
        """The reference schedule's run paired with ``run`` (same seed), if any."""
        if self.reference is None:
            return None
        for r in self.runs:
            if r.label == self.reference and r.seed == run.seed:
                return r
        return None

    # ------------------------------------------------------------------ tables
    @property
    def summary(self):
        """One row per run; see `SUMMARY_COLUMNS` and docs/compare.md.

        ``agreement`` is the share of output tokens equal to the reference schedule's run with the
        same seed (1.0 for the reference itself; NaN when it has no run with that seed).
        ``steps_to_q`` is `steps_to_lock` (per canvas, averaged). ``score`` is NaN without a scorer.
        """
        import pandas as pd

        rows = []
        for run in self.runs:
            t = run.trace
            ref = self._reference_run(run)
            fp = t.forward_passes()
            cost = t.stats().iloc[0] if t.num_steps else {}
            wall = float(run.wall_seconds)
            rows.append({
                "label": run.label,
                "seed": run.seed,
                "kind": run.schedule.get("kind", t.meta.get("source", "")),
                "family": t.family,
                "sampler": t.settings.get("sampler", ""),
                "complete": t.complete,
                "canvases": t.num_canvases,
                "steps": t.num_steps,
                "forward_passes": fp,
                "forward_passes_per_canvas": fp / t.num_canvases if t.num_canvases else math.nan,
                "tokens": int(cost.get("tokens", 0)),
                "tokens_per_forward": float(t.tokens_per_forward[0]),
                "wall_seconds": wall,
                "tokens_per_second": (cost.get("tokens", 0) / wall if wall > 0 else math.nan),
                "accepted_per_step": float(cost.get("accepted_per_step", math.nan)),
                "max_accepted_per_step": int(cost.get("max_accepted_per_step", 0)),
                "mean_final_confidence": mean_final_confidence(t),
                "steps_to_50": steps_to_lock(t, 0.5),
                "steps_to_90": steps_to_lock(t, 0.9),
                "steps_to_100": steps_to_lock(t, 1.0),
                "agreement": (token_agreement(t.output_ids[0], ref.trace.output_ids[0])
                              if ref is not None else math.nan),
                "score": float(run.score) if run.score is not None else math.nan,
                "text": run.text,
            })
        return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))

    @property
    def table(self):
        """The summary averaged over seeds: one row per schedule, in label order.

        Adds ``runs`` (how many seeds) and ``pareto`` (no other schedule has both lower or equal
        mean forward passes per canvas and higher or equal mean score, one of them strictly;
        only when scores exist).
        """
        import pandas as pd

        df = self.summary
        numeric = [c for c in SUMMARY_COLUMNS if c not in ("label", "seed", "kind", "family",
                                                            "sampler", "complete", "text")]
        grouped = df.groupby("label", sort=False)
        out = grouped[numeric].mean()
        out.insert(0, "runs", grouped.size())
        out.insert(1, "kind", grouped["kind"].first())
        if df["score"].notna().any():
            out["pareto"] = pareto_mask(out["forward_passes_per_canvas"].to_numpy(),
                                        out["score"].to_numpy())
        return out.reindex(pd.Index(self.labels, name="label"))

    # ------------------------------------------------------------------ figures
    def convergence_figure(self, x: str = "forward_passes", seeds: Iterable | None = None,
                           basis: str = "draft"):
        """Share of positions holding their final token against forward passes, one line per run.

        ``x="forward_passes"`` (absolute cost) or ``"normalized"`` (0..1 of each run's passes).
        Runs of one schedule share a colour; ``seeds`` picks which seeds to draw (default all).
        ``basis="draft"``: the run's draft holds its final token (`Trace.lock_in`);
        ``"prediction"``: the model's top-1 prediction already is the final token
        (`prediction_lock_in`; compares transformers and diffusers runs on the same footing).
        """
        from .plots.comparison import convergence_figure

        return convergence_figure(self, x=x, seeds=seeds, basis=basis)

    def accepted_figure(self, seed: Any = "first"):
        """Positions the sampler accepted at each step, one line per schedule (one seed).

        x is the step's position in its run, 0..1, so short and long schedules line up.
        ``seed="first"`` draws each schedule's first seed; pass a seed, or ``None`` for all runs.
        """
        from .plots.comparison import accepted_figure

        return accepted_figure(self, seed=seed)

    def pareto_figure(self, cost: str = "forward_passes_per_canvas", quality: str = "score"):
        """Quality against cost: every run (small), every schedule's mean (large), and the Pareto
        front of the schedule means (diamonds, labelled, dashed; lower cost and higher quality
        is better).

        Needs scores (``sweep(..., score=...)`` or `Comparison.rescore`) unless ``quality``
        names another summary column (e.g. ``"agreement"``, ``"mean_final_confidence"``).
        """
        from .plots.comparison import pareto_figure

        return pareto_figure(self, cost=cost, quality=quality)

    # ------------------------------------------------------------------ scoring
    def rescore(self, score: Callable[[str], float]) -> Comparison:
        """Score every run's text again (e.g. with a stricter scorer); returns self."""
        for run in self.runs:
            run.score = float(score(run.text))
        return self

    # ------------------------------------------------------------------ view
    def widget(self, *, runs: Sequence[int] | None = None, sync_mode: str = "normalized",
               max_runs: int = 12):
        """The runs' canvases replayed together: one compact `dgviz.Timeline` per run, synced.

        Moving any run's slider (or playing it) moves all of them: ``sync_mode="normalized"`` puts
        each run at the same share (0..1) of its steps; ``"forward_passes"`` at the same number
        of decoder forward passes (a run that finished shows its output). Switch in the view.
        The summary table (numbers only) is shown below. ``runs`` picks runs by index
        (default: the first ``max_runs``).
        """
        import ipywidgets as w

        from .widget import synced

        chosen = self._chosen(runs, max_runs)
        view = synced([self.runs[i].trace for i in chosen], self._view_labels(chosen),
                      sync_mode=sync_mode)
        table = self.summary.drop(columns=["text"]).iloc[chosen]
        # pandas escapes cell text; the table holds labels and numbers, no model text
        return w.VBox([view, w.HTML(table.to_html(index=False, float_format="{:.3g}".format))])

    def to_html(self, path: str | Path, *, runs: Sequence[int] | None = None,
                sync_mode: str = "normalized",
                title: str = "dgviz: schedules compared") -> Path:
        """Write the synced view as one self-contained HTML file (no kernel, no network)."""
        from .html import traces_to_html

        chosen = self._chosen(runs, len(self.runs))
        return traces_to_html([self.runs[i].trace for i in chosen], path,
                              labels=self._view_labels(chosen), sync_mode=sync_mode,
                              title=title)

    def _chosen(self, runs: Sequence[int] | None, limit: int) -> list[int]:
        if not self.runs:
            raise ValueError("This comparison has no runs to show.")
        return list(range(min(len(self.runs), limit))) if runs is None else list(runs)

    def _view_labels(self, chosen: Sequence[int]) -> list[str]:
        return [f"{self.runs[i].label} · seed {self.runs[i].seed}" for i in chosen]

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path) -> Path:
        """Write the comparison as a folder: one ``.dgtrace`` per run and ``index.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        entries = []
        for i, run in enumerate(self.runs):
            name = f"{i:03d}-{_slug(run.label)}-seed{run.seed}.dgtrace"
            run.trace.save(directory / name)
            entries.append({
                "file": name, "label": run.label, "seed": run.seed,
                "wall_seconds": _finite_or_none(run.wall_seconds),
                "score": _finite_or_none(run.score), "schedule": run.schedule,
            })
        index = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "reference": self.reference,
                 "complete": self.complete, "runs": entries}
        (directory / "index.json").write_text(json.dumps(index, indent=1, default=repr))
        return directory

    def _repr_html_(self) -> str:
        table = self.table.to_html(float_format="{:.3g}".format)
        return f"<p>{html.escape(repr(self))}</p>" + table


def pareto_mask(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """True where no other point has cost <= and quality >= with one strictly better.

    NaN points are False.
    """
    cost, quality = np.asarray(cost, float), np.asarray(quality, float)
    ok = ~(np.isnan(cost) | np.isnan(quality))
    out = np.zeros(cost.shape, bool)
    for i in np.flatnonzero(ok):
        others = ok.copy()
        others[i] = False
        dominated = others & (cost <= cost[i]) & (quality >= quality[i]) & (
            (cost < cost[i]) | (quality > quality[i]))
        out[i] = not dominated.any()
    return out


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")[:40] or "run"


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ============================================================================ building comparisons
def compare(traces: Sequence[Trace] | Mapping[str, Trace], labels: Sequence[str] | None = None,
            *, reference: str | None = None,
            score: Callable[[str], float] | None = None) -> Comparison:
    """A `Comparison` of recorded traces (from `dgviz.record`, files, or several sweeps).

    ``traces`` is a list (labels from ``labels``, else from each trace's schedule name or sampler
    and settings) or a ``{label: trace}`` dict. Multi-row traces become one run per row. The
    seed is read from each trace's settings; runs with equal seeds are paired.
    """
    if isinstance(traces, Mapping):
        if labels is not None:
            raise ValueError("Give labels either as the dict's keys or as labels=, not both.")
        labels, traces = list(traces.keys()), list(traces.values())
    traces = list(traces)
    if labels is not None and len(labels) != len(traces):
        raise ValueError(f"{len(labels)} labels for {len(traces)} traces.")
    runs = []
    for i, trace in enumerate(traces):
        if not isinstance(trace, Trace):
            raise TypeError(f"compare needs dgviz Traces; item {i} is {type(trace).__name__}.")
        label = labels[i] if labels is not None else _auto_label(trace, i)
        rows = [trace] if trace.batch_size == 1 else [trace.row(b) for b in range(trace.batch_size)]
        for b, t in enumerate(rows):
            runs.append(Run(
                label=label if len(rows) == 1 else f"{label}[{b}]", trace=t,
                seed=t.settings.get("seed"),
                wall_seconds=float(np.sum(t.step_seconds)),
                score=float(score(t.text[0])) if score is not None and t.text else None,
                schedule=t.meta.get("schedule", {"kind": t.meta.get("source", "")}),
            ))
    return Comparison(runs, reference=reference)


def _auto_label(trace: Trace, index: int) -> str:
    sched = trace.meta.get("schedule", {})
    if sched.get("name"):
        return sched["name"]
    s = trace.settings
    parts = [str(s.get("sampler", "run"))]
    if trace.family != "diffusion_gemma":  # another model family: say which
        parts.insert(0, trace.family)
    for key in ("max_denoising_steps", "entropy_bound", "t_min", "t_max"):
        if s.get(key) is not None:
            parts.append(f"{key}={s[key]}")
    return f"{index}: " + " ".join(parts)


def sweep(
    model: Any,
    tokenizer: Any,
    prompt: Any,
    schedules: Mapping[str, Any],
    seeds: Iterable[int] = (0,),
    score: Callable[[str], float] | None = None,
    *,
    max_new_tokens: int | None = None,
    reference: str | None = None,
    top_k: int = 5,
    routing: bool = False,
    progress: bool = True,
) -> Comparison:
    """Record every schedule with every seed and compare them.

    Parameters
    ----------
    model, tokenizer:
        A ``DiffusionGemmaForBlockDiffusion`` and its tokenizer (diffusers schedules wrap them in
        a ``DiffusionGemmaPipeline``), or a pipeline (``tokenizer`` may then be ``None``).
    prompt:
        One prompt: text, a chat (list of role/content messages) or input ids. diffusers'
        pipeline always applies the chat template, so a text prompt in a sweep that mixes
        diffusers and transformers schedules is sent to both as one user message.
    schedules:
        ``{label: schedule}``: a `dgviz.schedules.Schedule`, a dict of generate settings
        (``{"max_denoising_steps": 8, "entropy_bound": 0.5}``), a diffusers scheduler, or None
        (the model's defaults). See `dgviz.schedules.presets`.
    seeds:
        Each schedule runs once per seed, paired: seed by seed, all schedules.
    score:
        ``score(text) -> float`` (higher is better), e.g. a task's checker.
    max_new_tokens:
        Output length for every schedule that does not set its own (diffusers: ``gen_length``).
    reference:
        The label whose outputs ``agreement`` compares against (default: the first).
    top_k, routing:
        As in `dgviz.record` (routing is off by default: comparisons do not show it).
    progress:
        Show a progress bar.

    Returns
    -------
    Comparison
        If interrupted (Ctrl-C, the notebook's stop button), the finished runs, with
        ``comparison.complete`` False; the run in progress is dropped. If a run or the scorer
        raises, the error propagates with the finished runs as ``err.partial_comparison``.
    """
    from .recording.arguments import as_int

    if not isinstance(schedules, Mapping):
        raise TypeError("schedules must be a dict {label: settings} (got "
                        f"{type(schedules).__name__}); see dgviz.presets().")
    if not schedules:
        raise ValueError("sweep needs at least one schedule: schedules={label: settings}.")
    scheds = [as_schedule(str(label), value) for label, value in schedules.items()]
    labels = [str(label) for label in schedules]
    if isinstance(seeds, int | str):
        raise TypeError(f"seeds must be a list of integers, e.g. seeds=[0, 1, 2] (got {seeds!r}).")
    seeds = [as_int("each seed", s, low=0) for s in seeds]
    if not seeds:
        raise ValueError("sweep needs at least one seed.")
    if score is not None and not callable(score):
        raise TypeError(f"score must be a function score(text) -> float (got {score!r}).")
    if max_new_tokens is not None:
        max_new_tokens = as_int("max_new_tokens", max_new_tokens, low=1)
    if reference is not None and reference not in labels:
        raise ValueError(f"reference {reference!r} is not one of the schedules {labels}.")
    kinds = {s.kind for s in scheds}
    if isinstance(prompt, str) and "diffusers" in kinds and kinds != {"diffusers"}:
        warnings.warn(
            "diffusers' pipeline applies the chat template to a text prompt; to give every "
            "schedule the same input, the prompt is sent as one user message to all of them.",
            stacklevel=2,
        )
        prompt = [{"role": "user", "content": prompt}]

    runs: list[Run] = []
    complete = True
    bar = _progress(len(scheds) * len(seeds), progress)
    try:
        for seed in seeds:
            for label, sched in zip(labels, scheds, strict=True):
                if bar is not None:
                    bar.set_postfix_str(f"{label} · seed {seed}", refresh=False)
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Recording interrupted")
                    trace = sched.record(model, tokenizer, prompt, seed=seed,
                                         max_new_tokens=max_new_tokens, top_k=top_k,
                                         routing=routing)
                wall = time.perf_counter() - start
                if not trace.complete:  # dgviz.record swallowed a KeyboardInterrupt
                    raise KeyboardInterrupt
                text = trace.text[0] if trace.text else ""
                runs.append(Run(label=label, trace=trace, seed=seed, wall_seconds=wall,
                                score=float(score(text)) if score is not None else None,
                                schedule=sched.to_dict()))
                if bar is not None:
                    bar.update(1)
    except Exception as err:  # keep what was done for whoever catches it
        err.partial_comparison = Comparison(runs, complete=False)  # type: ignore[attr-defined]
        raise
    except KeyboardInterrupt:
        complete = False
        warnings.warn(
            f"Sweep interrupted: keeping the {len(runs)} finished run(s) of "
            f"{len(scheds) * len(seeds)} (comparison.complete is False).",
            stacklevel=2,
        )
    finally:
        if bar is not None:
            bar.close()
    if reference is None and runs:
        reference = runs[0].label
    return Comparison(runs, reference=reference, complete=complete)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        return None
    return tqdm(total=total, desc="sweep", unit="run")


def load_comparison(directory: str | Path) -> Comparison:
    """Read a comparison written by `Comparison.save` (never unpickles anything)."""
    directory = Path(directory)
    index_path = directory / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(
            f"No comparison index at {index_path} (written by Comparison.save).")
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{index_path} is damaged ({err}).") from err
    if index.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{index_path} is not a dgviz comparison index.")
    if int(index.get("version", 0)) > BUNDLE_VERSION:
        raise ValueError(f"{index_path} was written by a newer dgviz (format {index['version']}).")
    runs = []
    for entry in index["runs"]:
        name = entry["file"]
        if Path(name).name != name:
            raise ValueError(f"{index_path} names a file outside its folder: {name!r}.")
        wall = entry.get("wall_seconds")
        runs.append(Run(
            label=entry["label"], trace=load_trace(directory / name), seed=entry.get("seed"),
            wall_seconds=math.nan if wall is None else float(wall), score=entry.get("score"),
            schedule=entry.get("schedule", {}),
        ))
    return Comparison(runs, reference=index.get("reference"), complete=index.get("complete", True))


# ============================================================================ synced view
