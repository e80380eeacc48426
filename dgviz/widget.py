"""The canvas timeline widget: replay a `Trace` step by step in a notebook, or watch a run live.

``Timeline(trace)`` shows a recorded run; ``show(model, tokenizer, prompt, **kwargs)`` displays a
widget at once and fills it while the model generates (the recording runs in a background thread,
so the kernel stays responsive). The front end is one ESM bundle (``dgviz/static/widget.js``,
built from ``js/``).

Transport (see docs/widget.md): arrays travel as binary buffers with explicit dtypes
(`dgviz._codec`). ``_run`` holds the small whole-run arrays; ``_chunks`` holds one entry per
canvas with that canvas's steps. When the whole trace is larger than ``max_bytes`` the browser
asks for canvases as the playhead reaches them and holds at most ``max_bytes`` of them. Playback,
hover and the playhead live in JS only; a click on a token is sent back as `Timeline.selection`.
"""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from . import _codec
from .payload import STATIC, SYNC_MODES, canvas_payload, chunk_bytes, run_payload, token_payload
from .trace import Trace, visible

DEFAULT_MAX_BYTES = 16_000_000  # per widget, in the browser; Colab drops much larger comms


# ---------------------------------------------------------------------------- the widget
class Timeline(anywidget.AnyWidget):
    """Replay a recorded run step by step: ``Timeline(trace, row=0)``.

    Parameters
    ----------
    trace:
        The `Trace` to show (``None`` for an empty widget to fill with `record`).
    row:
        Which batch row to show.
    step:
        The global step the playhead starts at (``-1``: the last step).
    max_bytes:
        Most bytes of canvas data held by the browser. A trace over this size is sent one canvas
        at a time, as the playhead reaches it (the widget says so).
    routing:
        Send MoE routing (expert ids, weights, router entropy) if the trace has it.
    sync:
        A group name: every Timeline on the page with the same group scrubs and plays together
        (see `synced`). ``None``: independent.
    sync_mode:
        ``"normalized"`` or ``"forward_passes"`` (see `Timeline.sync_mode`).
    compact:
        Show only a header line, the controls, the state legend and the canvas.
    label:
        Text for the header (e.g. the schedule's name), instead of the prompt.
    model, tokenizer:
        The model and tokenizer that recorded ``trace``: the widget then offers "branch here"
        (pin a token, pick a replacement, press the button; `dgviz.branch` runs live and its
        timeline appears below, synced, differing tokens underlined). Without them (and in
        offline HTML) no branch control is shown.
    reference:
        A run to compare with (a branch's parent): tokens whose draft differs from it at the
        same step are underlined.
    """

    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    _run = traitlets.Dict().tag(sync=True)
    _chunks = traitlets.Dict().tag(sync=True)
    _live = traitlets.Dict().tag(sync=True)
    _tokens = traitlets.Dict().tag(sync=True)  # {str(id): text}; a live run adds to it per canvas
    status = traitlets.Unicode("").tag(sync=True)
    """What the widget is doing: ``""`` (a recorded trace), ``"running: …"``, ``"done: …"``,
    ``"stopped: …"`` or ``"error: …"``."""
    error = traitlets.Unicode("").tag(sync=True)
    """The error of a live run (also shown in the widget), ``""`` if none."""
    selection = traitlets.Dict(allow_none=True, default_value=None).tag(sync=True)
    """The token last clicked in the widget, ``{"step", "canvas", "position"}``, or ``None``.
    Set by the front end (the playhead and hover stay in the browser)."""
    sync = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    """Synchronized replay group: all views on the page with the same group scrub together
    (in the browser, no kernel round trip). ``None``: not synced."""
    sync_mode = traitlets.Enum(SYNC_MODES, default_value="normalized").tag(sync=True)
    """How synced runs line up: ``"normalized"`` (the same fraction of each run's steps) or
    ``"forward_passes"`` (the same decoder forward pass; a finished run shows its last step).
    Changing it in any member's UI changes it for the whole group."""
    compact = traitlets.Bool(False).tag(sync=True)
    """Only a header line, the controls, the state legend and the canvas (no inspector,
    explainer or routing panels): small enough to stack several runs."""
    label = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    """A title for the header (shown as text), instead of the prompt."""
    can_branch = traitlets.Bool(False).tag(sync=True)
    """A model is attached: the widget shows the "branch here" line (see `Timeline.branch`)."""

    def __init__(self, trace: Trace | None = None, *, row: int = 0, step: int = 0,
                 max_bytes: int = DEFAULT_MAX_BYTES, routing: bool = True,
                 sync: str | None = None, sync_mode: str = "normalized", compact: bool = False,
                 label: str | None = None, model: Any = None, tokenizer: Any = None,
                 sampler: Any = None, reference: Trace | None = None) -> None:
        _check_sync(sync, sync_mode)
        if label is not None and not isinstance(label, str):
            raise TypeError(f"label must be a string or None (got {type(label).__name__}).")
        if trace is not None and not isinstance(trace, Trace):
            raise TypeError(f"Timeline needs a dgviz.Trace, got {type(trace).__name__}.")
        if not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive integer (got {max_bytes!r}).")
        if (model is None) != (tokenizer is None):
            raise TypeError("Branching needs both the model and its tokenizer: "
                            "Timeline(trace, model=model, tokenizer=tokenizer).")
        if reference is not None and not isinstance(reference, Trace):
            raise TypeError(f"reference must be a dgviz.Trace (got {type(reference).__name__}).")
        super().__init__(sync=sync, sync_mode=sync_mode, compact=bool(compact), label=label,
                         can_branch=model is not None)
        self._model, self._tokenizer = model, tokenizer
        self._sampler = sampler  # the custom sampler factory of the run, if any: branches need it
        self._reference = reference
        self._branches: Any = None  # ipywidgets.VBox of the branches' views, made on first use
        self._family: Any = None  # VBox([self, self._branches])
        self.branches: list[Timeline] = []
        """The branches made from this widget, in order."""
        self._row = int(row)
        self._initial_step = int(step)
        self._max_bytes = max_bytes
        self._routing = bool(routing)
        self._trace: Trace | None = None
        self._states: Any = None  # the states shown (a live run has no FINAL in progress)
        self._in_progress: int | None = None
        self._loaded: list[int] = []  # canvases in _chunks, least recently requested first
        self._version = 0
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.exception: BaseException | None = None
        """The exception that ended a live run, if any."""
        self.on_msg(self._on_msg)
        if trace is not None:
            trace.check_row(self._row)
            self._show(trace)

    def __repr__(self) -> str:  # never serialize big traits for a repr
        return f"<dgviz.Timeline {self._trace!r} status={self.status!r}>"

    @property
    def trace(self) -> Trace | None:
        """The trace shown; after a live run, the same `Trace` that `dgviz.record` returns."""
        return self._trace

    @property
    def row(self) -> int:
        return self._row

    @property
    def payload_bytes(self) -> int:
        """Binary bytes currently held by the synced traits."""
        return _codec.nbytes(self._run) + _codec.nbytes(self._chunks) + _codec.nbytes(self._live)

    # ------------------------------------------------------------------ static traces
    def _transport(self, trace: Trace) -> dict[str, Any]:
        routing = self._routing and trace.has_routing
        sizes = [chunk_bytes(trace, c, routing) for c in range(trace.num_canvases)]
        total = int(sum(sizes))
        return {"cap_bytes": self._max_bytes, "total_bytes": total, "canvas_bytes": sizes,
                "mode": "all" if total <= self._max_bytes else "on-demand", "routing": routing}

    def _show(self, trace: Trace, *, live: bool = False, in_progress: int | None = None,
              reuse: bool = False) -> None:
        with self._lock:
            self._trace = trace
            self._in_progress = in_progress
            self._states = trace.states_in_progress(in_progress) if live else trace.states
            transport = self._transport(trace)
            step = self._initial_step
            if trace.num_steps:
                step = trace.num_steps - 1 if step < 0 else min(step, trace.num_steps - 1)
            run = run_payload(trace, self._row, initial_step=step, transport=transport, live=live,
                              in_progress=in_progress)
            done = [c for c in range(trace.num_canvases) if c != in_progress]
            if transport["mode"] == "all":
                wanted = done
            else:
                start = int(trace.step_canvas[step]) if trace.num_steps else 0
                wanted = [c for c in self._loaded if c in done]
                wanted = wanted or ([start] if start in done else [])
            # a live run re-sends only the canvas in progress: finished canvases do not change
            old = self._chunks if reuse else {}
            chunks = {str(c): old.get(str(c)) or self._chunk(c) for c in wanted}
            live_chunk = self._chunk(in_progress) if in_progress is not None else {}
            if in_progress is None:
                tokens = token_payload(trace, self._row)
            else:
                # the canvas in progress brings its own token text, so the (growing) table of
                # earlier canvases is sent once per canvas, not at every step
                lo = int(trace.canvas_bounds[in_progress, 0])
                tokens = token_payload(trace, self._row, 0, lo)
                extra = token_payload(trace, self._row, lo, context=False)
                live_chunk["token_text"] = {k: v for k, v in extra.items() if k not in tokens}
            self._loaded = list(wanted)
            with self.hold_sync():  # one message; _run last, so its observers see the rest
                self._tokens = tokens
                self._live = live_chunk
                self._chunks = chunks
                self._run = run

    def _chunk(self, canvas: int) -> dict[str, Any]:
        self._version += 1
        return canvas_payload(self._trace, self._row, canvas, routing=self._routing,
                              states=self._states, version=self._version,
                              reference=self._reference)

    def _load(self, canvas: int) -> None:
        """Send one more canvas (front-end request); drop the least recently used over the cap."""
        with self._lock:
            trace = self._trace
            if trace is None or not 0 <= canvas < trace.num_canvases or canvas == self._in_progress:
                return
            if canvas in self._loaded:
                self._loaded.remove(canvas)
                self._loaded.append(canvas)
                if str(canvas) in self._chunks:
                    return
            else:
                self._loaded.append(canvas)
            routing = self._routing and trace.has_routing
            while len(self._loaded) > 1 and sum(
                chunk_bytes(trace, c, routing) for c in self._loaded
            ) > self._max_bytes:
                self._loaded.pop(0)
            current = dict(self._chunks)
            chunks = {str(c): current.get(str(c)) or self._chunk(c) for c in self._loaded}
            self._chunks = chunks

    def _on_msg(self, _widget: Any, content: dict, _buffers: Any) -> None:
        kind = content.get("kind") if isinstance(content, dict) else None
        if kind == "load":
            self._load(int(content.get("canvas", -1)))
        elif kind == "stop":
            self.stop()
        elif kind == "branch":
            self._branch_request(content)

    # ------------------------------------------------------------------ branching
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if not self.can_branch:
            return super()._repr_mimebundle_(**kwargs)
        return self.view_with_branches()._repr_mimebundle_(**kwargs)

    def view_with_branches(self) -> Any:
        """This timeline with its branches below it (an ``ipywidgets.VBox``); what displaying a
        Timeline with a model shows."""
        import ipywidgets

        if self._branches is None:
            self._branches = ipywidgets.VBox([])
            self._family = ipywidgets.VBox([self, self._branches])
        return self._family

    def _branch_request(self, content: dict) -> None:
        """The front end's "branch here": ``{step, position, token | text}``."""
        from .recording.holds import resolve_token

        try:
            if self._trace is None or self._model is None:
                raise RuntimeError("This widget has no trace and model to branch.")
            position = int(content.get("position", -1))
            token = content.get("text") if "text" in content else content.get("token")
            vocab = int(self._trace.meta.get("model", {}).get("vocab_size") or 0) or 2**31
            token_id = resolve_token(self._tokenizer, token, vocab, f"position {position}")
            self.branch(int(content.get("step", -1)), {position: token_id})
        except Exception as err:  # shown in the widget: a click must not raise in the kernel
            self.error = f"branch refused: {err}"

    def branch(self, step: int, edits: dict | None = None, **branch_kwargs: Any) -> Timeline:
        """Branch this widget's run at ``step`` (`dgviz.branch`), live, in a new Timeline shown
        below this one and synced with it; returns the new Timeline (``.wait()`` gives its
        trace). ``branch_kwargs`` go to `dgviz.branch` (``entropy_bound=``, ...); they are
        checked here, before the new Timeline exists, so a mistake raises at once."""
        from .branching import prepare_branch

        trace = self._trace
        if trace is None or self._model is None:
            raise RuntimeError("Branching needs a recorded trace and the model: "
                               "Timeline(trace, model=model, tokenizer=tokenizer).")
        sampler = branch_kwargs.pop("sampler", self._sampler)
        run = prepare_branch(self._model, self._tokenizer, trace, step, edits, row=self._row,
                             sampler=sampler, **branch_kwargs)
        if self.sync is None:  # parent and branch scrub together, step for step
            import uuid

            self.sync_mode = "forward_passes"
            self.sync = f"dgviz-branch-{uuid.uuid4().hex[:12]}"
        label = _branch_label(self._tokenizer, step, edits or {}, branch_kwargs)
        child = Timeline(row=self._row, step=-1, sync=self.sync, sync_mode=self.sync_mode,
                         label=label, model=self._model, tokenizer=self._tokenizer,
                         sampler=sampler, reference=trace)
        self.branches.append(child)
        self.view_with_branches()
        self._branches.children = (*self._branches.children, child.view_with_branches())
        self.error = ""
        child._start(run)
        return child

    # ------------------------------------------------------------------ live runs
    def record(self, model: Any, tokenizer: Any, prompt: Any, *, interval: float = 0.1,
               **record_kwargs: Any) -> Timeline:
        """Record ``model`` on ``prompt`` in a background thread, filling this widget as it goes.

        ``record_kwargs`` go to `dgviz.record` (``seed``, ``max_new_tokens``, …). The widget is
        updated at most every ``interval`` seconds and at each new canvas. Returns at once; the
        result is `Timeline.trace` when `wait` returns (errors are shown in the widget and
        kept in `Timeline.exception`).
        """
        from .recording import record

        return self._start(lambda on_step: record(model, tokenizer, prompt, on_step=on_step,
                                                  **record_kwargs), interval=interval)

    def _start(self, run: Any, *, interval: float = 0.1) -> Timeline:
        """Run ``run(on_step) -> Trace`` in a background thread, filling this widget live."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("This widget is already recording a run; wait() or stop() first.")
        from .recording import StepEvent

        self._stop.clear()
        self.exception = None
        self.error = ""
        self.status = "running: preparing"
        last_push, last_canvas = [0.0], [-1]
        started = time.perf_counter()

        def on_step(event: StepEvent) -> None:
            if self._stop.is_set():
                raise _Stopped
            now = time.perf_counter()
            # at most every `interval` seconds, and at the first step of each canvas
            if now - last_push[0] < interval and event.canvas == last_canvas[0]:
                return
            last_push[0], last_canvas[0] = now, event.canvas
            self._show(event.snapshot(), live=True, in_progress=event.canvas, reuse=True)
            self.status = f"running: step {event.step + 1} · canvas {event.canvas + 1}"

        def work() -> None:
            try:
                trace = run(on_step)
            except _Stopped as err:
                partial = getattr(err, "partial_trace", None)  # record attaches the steps so far
                if partial is None:  # building it failed: keep the last live view
                    self.status = "stopped"
                else:
                    self._finish(partial,
                                 f"stopped: after {partial.num_steps} steps (incomplete trace)")
            except BaseException as err:  # shown in the widget; the kernel never sees it
                self.exception = err
                partial = getattr(err, "partial_trace", None)
                if partial is not None and partial.num_steps:
                    self._finish(partial, "error")
                self.error = "".join(traceback.format_exception_only(type(err), err)).strip()
                self.status = "error: the run failed (see below)"
            else:
                seconds = time.perf_counter() - started
                self._finish(trace, f"done: {trace.num_steps} steps in {seconds:.1f} s")

        self._thread = threading.Thread(target=work, name="dgviz-live-record", daemon=True)
        self._thread.start()
        return self

    def _finish(self, trace: Trace, status: str) -> None:
        self._show(trace)
        self.status = status

    def stop(self) -> None:
        """Ask a live run to stop after the current step (the steps so far are kept)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> Trace | None:
        """Block until a live run ends; returns `Timeline.trace`."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._trace

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ export
    def save_html(self, path: str | Path, **kwargs: Any) -> Path:
        """Write the shown trace as one self-contained HTML file (see `dgviz.html`)."""
        from .html import trace_to_html

        if self._trace is None:
            raise ValueError("This widget has no trace yet.")
        return trace_to_html(self._trace, path, row=self._row, **kwargs)


def _check_sync(sync: Any, sync_mode: Any) -> None:
    if sync is not None and (not isinstance(sync, str) or not sync):
        raise ValueError(f"sync must be a non-empty group name or None (got {sync!r}).")
    if sync_mode not in SYNC_MODES:
        raise ValueError(f"sync_mode must be one of {SYNC_MODES} (got {sync_mode!r}).")


def synced(traces: Any, labels: Any = None, *, sync_mode: str = "normalized",
           compact: bool = True, group: str | None = None, row: int = 0) -> Any:
    """Stacked Timelines of several runs that scrub and play together: an ``ipywidgets.VBox``.

    ``traces`` is a sequence of `Trace` (e.g. one per schedule); ``labels`` names them in each
    header (default ``"run 1"``, ``"run 2"``, …). ``sync_mode`` is the initial `Timeline.sync_mode`
    (switchable in the widget). ``group`` defaults to a fresh name, so two stacks do not move
    each other. ``row`` is the batch row shown for every trace.
    """
    import uuid

    import ipywidgets

    traces = list(traces)
    if not traces:
        raise ValueError("synced() needs at least one trace.")
    labels = [f"run {i + 1}" for i in range(len(traces))] if labels is None else list(labels)
    if len(labels) != len(traces):
        raise ValueError(f"{len(labels)} labels for {len(traces)} traces.")
    _check_sync(group, sync_mode)
    group = group or f"dgviz-{uuid.uuid4().hex[:12]}"
    views = [Timeline(t, row=row, sync=group, sync_mode=sync_mode, compact=compact,
                      label=None if lab is None else str(lab))
             for t, lab in zip(traces, labels, strict=True)]
    return ipywidgets.VBox(views)


class _Stopped(Exception):
    """Raised inside the recorder's step callback to stop a live run."""


def show(source: Any = None, /, tokenizer: Any = None, prompt: Any = None, *,
         model: Any = None, row: int = 0, interval: float = 0.1,
         **record_kwargs: Any) -> Timeline:
    """Display a timeline at once: a live run, or a recorded trace you can branch.

    ``show(model, tokenizer, prompt, **record_kwargs)`` fills the widget step by step while
    ``model`` generates; ``record_kwargs`` go to `dgviz.record` (``seed``, ``max_new_tokens``,
    ``max_denoising_steps``, …), and ``widget.wait()`` returns the finished `Trace` (the same
    one `dgviz.record` returns).

    ``show(trace, model=model, tokenizer=tokenizer)`` shows a recorded run with "branch here":
    pin a token, pick a replacement, and the branch (`dgviz.branch`) records live below it (a
    run recorded with a custom sampler: pass its factory again, ``sampler=``). Returns the widget.
    """
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        def display(_widget: Any) -> None:
            pass

    if isinstance(source, Trace):
        sampler = record_kwargs.pop("sampler", None)
        if prompt is not None or record_kwargs:
            raise TypeError("show(trace, model=..., tokenizer=...) takes no prompt or record "
                            "settings: the trace has them.")
        widget = Timeline(source, row=row, model=model, tokenizer=tokenizer, sampler=sampler)
        display(widget)
        return widget
    if source is not None and model is not None:
        raise TypeError("Give the model once: show(model, tokenizer, prompt).")
    widget = Timeline(row=row, step=-1)
    display(widget)
    return widget.record(source if model is None else model, tokenizer, prompt,
                         interval=interval, **record_kwargs)


def _branch_label(tokenizer: Any, step: int, edits: dict, settings: dict) -> str:
    """The branch's header: where it forked and what changed (shown as text)."""
    changes = []
    for position, token in edits.items():
        text = tokenizer.decode([token]) if isinstance(token, int) else str(token)
        changes.append(f"position {position} \u2192 {visible(text)!r}")
    changes += [f"{k}={v}" for k, v in settings.items()]
    return f"branch at step {int(step) + 1}" + (": " + ", ".join(changes) if changes else "")
