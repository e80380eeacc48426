"""The Trace: what one recorded diffusion run did, step by step.

Every view in dgviz reads a `Trace`. It is plain numpy arrays with fixed shapes plus a little
JSON metadata, so it saves to one pickle-free file and reloads anywhere without torch.

Axes (the same letters in every docstring):

- ``B`` batch rows of the generate call,
- ``S`` denoising steps of the whole run, all canvases one after another (a global timeline);
  ``step_canvas[s]`` says which canvas step ``s`` belongs to,
- ``C`` canvases (blocks) generated,
- ``L`` canvas length (positions per canvas),
- ``K`` top-k alternatives kept per position,
- ``N`` decoder (or encoder) MoE layers, ``E`` experts, ``k`` experts chosen per token,
- ``T`` tokens the encoder read (the prompt, then each finished canvas but the last).
"""

from __future__ import annotations

import math
from dataclasses import InitVar, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .trace_checks import TraceFormatError as TraceFormatError  # re-exported: part of the API
from .trace_checks import check_shapes, check_token_text, check_values

# Arrays every trace has, with their dtype; `None` marks optional (routing) arrays.
_ARRAY_DTYPES: dict[str, Any] = {
    "canvas_in": np.int32,
    "sampled": np.int32,
    "draft": np.int32,
    "accepted": np.bool_,
    "confidence": np.float32,
    "entropy": np.float32,
    "topk_ids": np.int32,
    "topk_probs": np.float16,  # 3 significant digits: enough for any view
    "active": np.bool_,
    "stop": np.bool_,
    "step_canvas": np.int32,
    "step_remaining": np.int32,
    "temperature": np.float32,
    "step_seconds": np.float64,
    "prompt_ids": np.int32,
    "output_ids": np.int32,
    "tokens_per_forward": np.float32,
}
_OPTIONAL_DTYPES: dict[str, Any] = {
    "expert_ids": np.int16,
    "expert_weights": np.float16,
    "router_entropy": np.float16,
    "encoder_expert_ids": np.int16,
    "encoder_expert_weights": np.float16,
    "encoder_router_entropy": np.float16,
}


# Position states per step, the one colour language of every view (see `dgviz.palette`).
RENOISED, NEW, KEPT, FINAL, MASKED, HELD = 0, 1, 2, 3, 4, 5
STATE_NAMES = ("re-noised", "accepted this step", "accepted earlier", "final", "masked", "held")
# The states each kind of run has, in legend order: uniform-noise diffusion (DiffusionGemma)
# re-noises what it does not accept; masked diffusion (LLaDA2) leaves it masked.
UNIFORM_STATES = (RENOISED, NEW, KEPT, FINAL)
MASKED_STATES = (MASKED, NEW, KEPT, FINAL)


def visible(text: str) -> str:
    """Make whitespace in a token visible for labels and hovers: `·` space, `↵` newline, `⇥` tab."""
    return text.replace(" ", "·").replace("\n", "↵").replace("\t", "⇥")


@dataclass(eq=False, repr=False)
class Trace:
    """One recorded run of a DiffusionGemma sampler.

    Per step (``[B, S, ...]``; step ``s`` of row ``b``):

    - ``canvas_in`` int32 ``[B, S, L]``: the canvas the decoder read at this step.
    - ``sampled`` int32 ``[B, S, L]``: tokens sampled from the denoiser's distribution.
    - ``draft`` int32 ``[B, S, L]``: the argmax draft after this step (what the streamer shows;
      the last draft of a canvas is that canvas's output).
    - ``accepted`` bool ``[B, S, L]``: kept by the sampler this step; the rest was re-noised.
    - ``confidence`` float32 ``[B, S, L]``: highest probability after the temperature schedule.
    - ``entropy`` float32 ``[B, S, L]``: entropy (nats) of that distribution.
    - ``topk_ids`` int32 / ``topk_probs`` float16 ``[B, S, L, K]``: the most likely tokens.
    - ``active`` bool ``[B, S]``: the row was still denoising (a row that stopped early keeps
      its draft while the other rows go on; its other values at that step mean nothing).
    - ``stop`` bool ``[B, S]``: the adaptive stop criterion fired after this step.

    Per step, shared by the batch (``[S]``): ``step_canvas`` (canvas index), ``step_remaining``
    (transformers counts steps *down*: N … 1), ``temperature`` (NaN when none), ``step_seconds``.

    Routing (optional, ``None`` when not recorded): ``expert_ids`` int16 / ``expert_weights``
    float16 ``[B, S, N, L, k]`` and ``router_entropy`` float16 ``[B, S, N, L]`` for the decoder;
    ``encoder_expert_ids`` / ``encoder_expert_weights`` ``[B, T, N, k]`` and
    ``encoder_router_entropy`` ``[B, T, N]`` for the encoder.

    Per run: ``prompt_ids`` ``[B, P]``, ``output_ids`` ``[B, G]`` (equal to
    ``generate(...).sequences[:, P:]``), ``tokens_per_forward`` ``[B]``, ``token_text``
    (id -> decoded text, for every id that appears anywhere above) and ``meta`` (settings,
    library versions, model facts; see `Trace.settings`).
    """

    canvas_in: np.ndarray
    sampled: np.ndarray
    draft: np.ndarray
    accepted: np.ndarray
    confidence: np.ndarray
    entropy: np.ndarray
    topk_ids: np.ndarray
    topk_probs: np.ndarray
    active: np.ndarray
    stop: np.ndarray
    step_canvas: np.ndarray
    step_remaining: np.ndarray
    temperature: np.ndarray
    step_seconds: np.ndarray
    prompt_ids: np.ndarray
    output_ids: np.ndarray
    tokens_per_forward: np.ndarray
    token_text: dict[int, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    expert_ids: np.ndarray | None = None
    expert_weights: np.ndarray | None = None
    router_entropy: np.ndarray | None = None
    encoder_expert_ids: np.ndarray | None = None
    encoder_expert_weights: np.ndarray | None = None
    encoder_router_entropy: np.ndarray | None = None
    validate: InitVar[bool] = True
    """Check every value (see `dgviz.trace_checks`); the recorder's live snapshots skip it."""

    def __post_init__(self, validate: bool) -> None:
        for name, dtype in ARRAY_DTYPES.items():
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.ascontiguousarray(value, dtype=dtype))
        check_shapes(self)
        if validate:
            self.token_text = check_token_text(self.token_text)
            model = self.meta.get("model") if isinstance(self.meta, dict) else None
            vocab = model.get("vocab_size") if isinstance(model, dict) else None
            experts = self.meta.get("num_experts") if isinstance(self.meta, dict) else None
            check_values(self, vocab if isinstance(vocab, int) else None,
                         experts if isinstance(experts, int) else None)

    # ------------------------------------------------------------------ sizes and facts
    @property
    def batch_size(self) -> int:
        return self.canvas_in.shape[0]

    @property
    def num_steps(self) -> int:
        """Denoising steps in the whole run (all canvases)."""
        return self.canvas_in.shape[1]

    @property
    def canvas_length(self) -> int:
        return self.canvas_in.shape[2]

    @property
    def num_canvases(self) -> int:
        return int(self.step_canvas.max()) + 1 if self.num_steps else 0

    @property
    def has_routing(self) -> bool:
        return self.expert_ids is not None

    @property
    def num_experts(self) -> int | None:
        """Experts per MoE layer: the model's count, else one more than the largest id seen;
        None without routing."""
        if self.meta.get("num_experts"):
            return int(self.meta["num_experts"])
        seen = [a for a in (self.expert_ids, self.encoder_expert_ids) if a is not None and a.size]
        return max(int(a.max()) for a in seen) + 1 if seen else None

    def check_row(self, row: int) -> None:
        """Raise `IndexError` unless ``row`` is a batch row of this trace."""
        if not 0 <= row < self.batch_size:
            raise IndexError(f"row {row} out of range: this trace has {self.batch_size} row(s).")

    @property
    def family(self) -> str:
        """The model family that produced the run: ``"diffusion_gemma"`` (traces without a
        ``meta["family"]``: every DiffusionGemma trace) or ``"llada2"``."""
        return str(self.meta.get("family", "diffusion_gemma"))

    @property
    def mask_token_id(self) -> int | None:
        """The mask token of a masked-diffusion run (LLaDA2), None for uniform-noise runs."""
        value = self.meta.get("mask_token_id")
        return None if value is None else int(value)

    @property
    def state_values(self) -> tuple[int, ...]:
        """The states this run's positions can take, in legend order (`MASKED_STATES` for
        masked diffusion, else `UNIFORM_STATES`; then ``HELD`` if tokens were held)."""
        states = UNIFORM_STATES if self.mask_token_id is None else MASKED_STATES
        return (*states, HELD) if self.meta.get("held") else states

    @property
    def run_id(self) -> str:
        """This run's identity (``meta["run_id"]``, set when it was recorded; for older traces a
        digest of its prompt and first canvas). A branch names its parent by it."""
        if self.meta.get("run_id"):
            return str(self.meta["run_id"])
        import hashlib

        h = hashlib.sha256(self.prompt_ids.tobytes())
        h.update(self.canvas_in[:, :1].tobytes())
        return h.hexdigest()[:32]

    @property
    def fork(self) -> dict[str, Any] | None:
        """Where this run was branched from its parent (`dgviz.branch`): ``{"parent": run_id,
        "step", "canvas", "row", "edits": {position: token id}, "settings": {...}}``; None for a
        run recorded from scratch."""
        fork = self.meta.get("fork")
        return dict(fork) if isinstance(fork, dict) else None

    def held_tokens(self) -> list[dict[str, Any]]:
        """The tokens this run held (``record(hold=...)`` and a branch's edits): dicts with
        ``canvas, position, token, row`` (None: every row) and ``from_step`` (None: from the
        canvas's first step)."""
        return [dict(h) for h in self.meta.get("held", [])]

    def settings_at(self, step: int) -> dict[str, Any]:
        """`settings` in force at global ``step``: a branch changes some from its fork on."""
        out = self.settings
        for change in self.meta.get("changes", []):
            if change["step"] <= step:
                out.update(change["settings"])
        return out

    @property
    def complete(self) -> bool:
        """False when the run was interrupted: the trace holds the steps done so far."""
        return bool(self.meta.get("complete", True))

    @property
    def settings(self) -> dict[str, Any]:
        """The generate settings in force (defaults filled in), as recorded."""
        return dict(self.meta.get("settings", {}))

    @property
    def text(self) -> list[str]:
        """Decoded output, one string per batch row (special tokens and padding dropped)."""
        return list(self.meta.get("text", []))

    @property
    def prompt_text(self) -> list[str]:
        return list(self.meta.get("prompt_text", []))

    def canvas_steps(self, canvas: int) -> np.ndarray:
        """Global step indices of one canvas, in order."""
        self._check_canvas(canvas)
        return np.flatnonzero(self.step_canvas == canvas)

    def _check_canvas(self, canvas: int) -> None:
        if not 0 <= canvas < self.num_canvases:
            raise IndexError(f"canvas {canvas} out of range: this trace has {self.num_canvases}.")

    def tokens(self, ids: np.ndarray | list[int]) -> list[str]:
        """Decoded text of each id (ids not seen in the run come back as ``⟨id⟩``)."""
        return [self.token_text.get(int(i), f"⟨{int(i)}⟩") for i in np.asarray(ids).ravel()]

    # ------------------------------------------------------------------ derived, computed once
    @cached_property
    def canvas_bounds(self) -> np.ndarray:
        """int ``[C, 2]``: first and one-past-last global step of each canvas."""
        out = np.zeros((self.num_canvases, 2), dtype=np.int64)
        for c in range(self.num_canvases):
            steps = np.flatnonzero(self.step_canvas == c)
            out[c] = steps[0], steps[-1] + 1
        return out

    @cached_property
    def last_active_step(self) -> np.ndarray:
        """int32 ``[B, C]``: global index of each row's last active step in each canvas."""
        out = np.zeros((self.batch_size, self.num_canvases), dtype=np.int32)
        for c, (lo, hi) in enumerate(self.canvas_bounds):
            for b in range(self.batch_size):
                act = np.flatnonzero(self.active[b, lo:hi])
                out[b, c] = lo + (act[-1] if act.size else 0)
        return out

    @cached_property
    def final_tokens(self) -> np.ndarray:
        """int32 ``[B, C, L]``: each canvas's output, the draft of its row's last active step."""
        b_idx = np.arange(self.batch_size)[:, None]
        return self.draft[b_idx, self.last_active_step]

    @cached_property
    def lock_in(self) -> np.ndarray:
        """int32 ``[B, C, L]``: first global step from which the draft holds its final token.

        "Holds its final token from here on" differs from "accepted": a position can be accepted
        with a token it later loses, and hold its final token long before it is accepted.
        """
        return self.holds_final_from(self.draft)

    def holds_final_from(self, tokens: np.ndarray) -> np.ndarray:
        """int32 ``[B, C, L]``: first global step from which ``tokens`` (``[B, S, L]``, e.g.
        ``topk_ids[..., 0]``) equal each canvas's final token at every later active step."""
        out = np.zeros((self.batch_size, self.num_canvases, self.canvas_length), dtype=np.int32)
        for c, (lo, _) in enumerate(self.canvas_bounds):
            for b in range(self.batch_size):
                last = self.last_active_step[b, c]
                holds = tokens[b, lo : last + 1] == self.final_tokens[b, c]  # [steps, L]
                # steps from the end during which it has held the final token
                tail = np.cumprod(holds[::-1], axis=0).sum(axis=0)
                out[b, c] = last + 1 - tail
        return out

    @cached_property
    def held(self) -> np.ndarray:
        """bool ``[B, S, L]``: the position carried a held token at that step (`held_tokens`)."""
        out = np.zeros(self.accepted.shape, dtype=bool)
        for h in self.held_tokens():
            if not 0 <= h["canvas"] < self.num_canvases:
                continue  # a hold on a canvas the run never reached
            lo, hi = self.canvas_bounds[h["canvas"]]
            start = lo if h["from_step"] is None else max(lo, h["from_step"])
            rows = slice(None) if h["row"] is None else slice(h["row"], h["row"] + 1)
            out[rows, start:hi, h["position"]] = True
        return out

    @cached_property
    def flips(self) -> np.ndarray:
        """int32 ``[B, C, L]``: how often the draft changed between consecutive active steps
        (masked diffusion: a mask being filled does not count; edits do)."""
        out = np.zeros((self.batch_size, self.num_canvases, self.canvas_length), dtype=np.int32)
        for c, (lo, _) in enumerate(self.canvas_bounds):
            for b in range(self.batch_size):
                d = self.draft[b, lo : self.last_active_step[b, c] + 1]
                changed = d[1:] != d[:-1]
                if self.mask_token_id is not None:  # filling a mask is a commit, not a flip
                    changed &= d[:-1] != self.mask_token_id
                out[b, c] = changed.sum(axis=0)
        return out

    @cached_property
    def first_accepted(self) -> np.ndarray:
        """int32 ``[B, C, L]``: first global step the sampler accepted the position, -1 if never."""
        out = np.full((self.batch_size, self.num_canvases, self.canvas_length), -1, np.int32)
        for c, (lo, _) in enumerate(self.canvas_bounds):
            for b in range(self.batch_size):
                acc = self.accepted[b, lo : self.last_active_step[b, c] + 1]
                seen = acc.any(axis=0)
                out[b, c, seen] = lo + acc.argmax(axis=0)[seen]
        return out

    @cached_property
    def states(self) -> np.ndarray:
        """uint8 ``[B, S, L]``: each position's state after each step.

        ``RENOISED`` (0) the sampler threw the token away and drew a random one; ``NEW`` (1)
        accepted this step but not the step before; ``KEPT`` (2) accepted this step and the one
        before; ``FINAL`` (3) the draft already holds the canvas's final token and keeps it to the
        end (from `lock_in` on), whether or not the sampler accepted it. Steps where a row was no
        longer active repeat its last active state.

        Masked diffusion (LLaDA2, ``meta["mask_token_id"]`` set): ``MASKED`` (4) the position
        still holds the mask token; an edit (a committed token replaced) is ``NEW``; nothing is
        ever ``RENOISED``. ``HELD`` (5): a token fixed by ``record(hold=...)`` or a branch's edit
        (`held`), whatever else holds.
        """
        return self._states(in_progress=None)

    def states_in_progress(self, canvas: int | None) -> np.ndarray:
        """`states` while ``canvas`` is still being generated (a live view): none of its
        positions is FINAL yet, since its final tokens are not known."""
        return self.states if canvas is None else self._states(in_progress=canvas)

    def _states(self, in_progress: int | None) -> np.ndarray:
        out = np.zeros(self.accepted.shape, dtype=np.uint8)
        for c, (lo, hi) in enumerate(self.canvas_bounds):
            acc = self.accepted[:, lo:hi]
            prev = np.zeros_like(acc)
            prev[:, 1:] = acc[:, :-1]
            state = np.where(acc, np.where(prev, KEPT, NEW), RENOISED).astype(np.uint8)
            mask = self.mask_token_id
            if mask is not None:  # masked diffusion: an edit commits a new token this step
                d = self.draft[:, lo:hi]
                edited = np.zeros_like(acc)
                edited[:, 1:] = (d[:, 1:] != d[:, :-1]) & (d[:, :-1] != mask)
                state[acc & prev & edited] = NEW
            if c != in_progress:
                steps = np.arange(lo, hi)[None, :, None]
                state[steps >= self.lock_in[:, c][:, None, :]] = FINAL
            if mask is not None:  # still masked, whatever the canvas ends with
                state[self.draft[:, lo:hi] == mask] = MASKED
            state[self.held[:, lo:hi]] = HELD
            if c != in_progress:
                for b in range(self.batch_size):  # inactive tail: freeze the last active state
                    last = self.last_active_step[b, c] - lo
                    state[b, last + 1:] = state[b, last]
            out[:, lo:hi] = state
        return out

    def sampler_explainer(self, step: int, row: int = 0) -> dict[str, np.ndarray | float]:
        """Why the entropy-bound sampler accepted what it did at one step.

        It sorts positions by entropy and accepts the k lowest with
        ``sum(entropy_1..k) - max(entropy_1..k) <= entropy_bound``. Returns ``order`` (positions,
        lowest entropy first), ``sorted_entropy``, ``cumulative`` and ``criterion``
        (``cumulative - sorted_entropy``, the left side), ``bound`` and ``accepted`` (in sorted
        order, as recorded).
        """
        ent = self.entropy[row, step]
        order = np.argsort(ent, kind="stable")
        sorted_ent = ent[order]
        cumulative = np.cumsum(sorted_ent, dtype=np.float64)
        return {
            "order": order,
            "sorted_entropy": sorted_ent,
            "cumulative": cumulative,
            "criterion": cumulative - sorted_ent,
            "bound": float(self.settings_at(step).get("entropy_bound") or math.nan),
            "accepted": self.accepted[row, step][order],
        }

    @cached_property
    def routing_steps(self) -> dict[str, np.ndarray]:
        """How the decoder's routing moves between steps, ``[B, S, N]`` arrays: ``experts_used``,
        ``similarity`` to the step before (weighted Jaccard, averaged over positions) and the
        same split by positions whose token ``similarity_changed`` / ``similarity_stayed``.
        See `dgviz.trace_stats.routing_steps`."""
        from .trace_stats import routing_steps

        return routing_steps(self)

    def stats(self) -> Any:
        """What the run cost, one row per batch row (a pandas DataFrame): decoder forward
        passes, tokens generated, tokens per forward pass, wall seconds, effective tokens per
        second, positions newly accepted per step (mean, max), canvases, steps per canvas.
        See `dgviz.trace_stats.run_stats`."""
        from .trace_stats import run_stats

        return run_stats(self)

    def forward_passes(self, row: int = 0) -> int:
        """Decoder forward passes this row used: its active steps, plus extra passes a diffusers
        scheduler made within steps (corrector sweeps), as recorded in ``settings``."""
        if "step_passes" in self.settings:
            return int(self.step_passes(row).sum())
        extra = self.settings.get("forward_passes")  # traces recorded before step_passes
        return int(extra) if extra is not None else int(self.active[row].sum())

    def step_passes(self, row: int = 0) -> np.ndarray:
        """Decoder forward passes at each step, ``[S]``: 1 while the row was active, 0 after it
        finished, more where a diffusers scheduler's corrector sweeps ran within the step."""
        active = self.active[row].astype(np.int64)
        per_step = self.settings.get("step_passes")
        return active if per_step is None else active * np.asarray(per_step, dtype=np.int64)

    # ------------------------------------------------------------------ slicing
    def row(self, b: int) -> Trace:
        """A one-row trace of batch row ``b``."""
        self.check_row(b)
        sl = slice(b, b + 1)
        shared = ("token_text", "meta", "step_canvas", "step_remaining", "temperature",
                  "step_seconds")  # the same for every row
        kwargs = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in shared or value is None:
                kwargs[f.name] = value
            else:
                kwargs[f.name] = value[sl]
        meta = dict(self.meta)
        for key in ("text", "prompt_text", "attention_mask"):
            if key in meta:
                meta[key] = meta[key][sl]
        if "held" in meta:  # this row's holds, now row None (every row of a one-row trace)
            meta["held"] = [{**h, "row": None} for h in meta["held"] if h["row"] in (None, b)]
        # one row of a batch run (row, batch size): its random draws were the whole batch's
        meta["row_of_batch"] = [b, self.batch_size]
        kwargs["meta"] = meta
        return Trace(**kwargs)

    # ------------------------------------------------------------------ export
    def to_dataframe(self, routing: bool = True):
        """One row per (batch row, step, position), for pandas users.

        Columns: ``row, canvas, step, canvas_step, remaining, position, canvas_in, sampled, draft,
        draft_text, accepted, confidence, entropy, top1_prob, active, locked, temperature`` and,
        with routing, ``expert_<layer>`` (top-1 decoder expert per layer).
        """
        import pandas as pd

        b, s, length = self.canvas_in.shape
        row, step, pos = np.meshgrid(np.arange(b), np.arange(s), np.arange(length), indexing="ij")
        canvas = self.step_canvas[step]
        first = self.canvas_bounds[:, 0] if self.num_canvases else np.zeros(0, np.int64)
        lock = self.lock_in[row, canvas, pos] if s else np.zeros_like(step)
        data = {
            "row": row.ravel(),
            "canvas": canvas.ravel(),
            "step": step.ravel(),
            "canvas_step": (step - first[canvas]).ravel() if s else step.ravel(),
            "remaining": self.step_remaining[step].ravel(),
            "position": pos.ravel(),
            "canvas_in": self.canvas_in.ravel(),
            "sampled": self.sampled.ravel(),
            "draft": self.draft.ravel(),
            "draft_text": self.tokens(self.draft),
            "accepted": self.accepted.ravel(),
            "confidence": self.confidence.ravel(),
            "entropy": self.entropy.ravel(),
            "active": self.active[row, step].ravel(),
            "locked": (step >= lock).ravel(),
            "temperature": self.temperature[step].ravel(),
        }
        if routing and self.expert_ids is not None:
            for layer in range(self.expert_ids.shape[2]):
                data[f"expert_{layer}"] = self.expert_ids[:, :, layer, :, 0].ravel()
        return pd.DataFrame(data)

    def save(self, path: str | Path) -> Path:
        """Write the trace to one file (safetensors arrays + JSON metadata, checksummed; no
        pickle; see `dgviz.tracefile`). The suffix ``.dgtrace`` is conventional. Returns the
        path written."""
        from .tracefile import save_trace

        return save_trace(self, path)

    def to_html(self, path: str | Path, **kwargs: Any) -> Path:
        """Write one self-contained HTML file that replays this run without a kernel."""
        from .html import trace_to_html

        return trace_to_html(self, path, **kwargs)

    def to_gif(self, path: str | Path, **kwargs: Any) -> Path:
        """Write an animated GIF of the canvas evolving, for slides."""
        from .plots import canvas_gif

        return canvas_gif(self, path, **kwargs)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # Showing a trace in a notebook shows its timeline widget.
        from .widget import Timeline

        return Timeline(self)._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        routing = f", {self.expert_ids.shape[2]} routed layers" if self.has_routing else ""
        state = "" if self.complete else ", INCOMPLETE"
        return (
            f"<Trace {self.batch_size} row(s), {self.num_canvases} canvas(es) x "
            f"{self.canvas_length} positions, {self.num_steps} steps{routing}{state}>"
        )


REQUIRED_ARRAYS = tuple(_ARRAY_DTYPES)  # every trace file has these
ARRAY_DTYPES = {**_ARRAY_DTYPES, **_OPTIONAL_DTYPES}  # every array's dtype in a Trace
