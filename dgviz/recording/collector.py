"""The step collector: one run's per-step arrays, reduced on the device, kept there and copied
to the host a batch of steps at a time in the trace's dtypes (every step when someone watches the
run), and built into a `Trace`. Shared by every recording loop."""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..trace import ARRAY_DTYPES, Trace
from .model_access import decoder_routers, encoder_routers
from .tokens import token_texts


@dataclass
class StepEvent:
    """One finished denoising step, handed to ``record(..., on_step=...)`` as it happens.

    Arrays are numpy in the `Trace`'s dtypes, batch first, without the step axis
    (``canvas_in`` is ``[B, L]``, ``expert_ids`` is ``[B, N, L, k]``; see `Trace` for the
    meaning of each).
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


class Collector:
    """Collects the steps of one run and builds the Trace; shared by every recording path.

    A recording path sets ``prompt_ids``, fills ``pending`` with the step's device tensors,
    lets the router hooks fill their sinks, and calls `flush_step` once per step; the steps reach
    the host in batches (`_to_buffers`), and `stack` / `build` read them from there.
    """

    # pending tensors the loop makes anew at every step (never changes afterwards): kept as they
    # are until a batch of steps is copied to the host; the others are copied at the step's end
    fresh_inputs: frozenset[str] = frozenset()

    def __init__(self, tokenizer, *, top_k: int, routing: bool, on_step, canvas_length: int,
                 vocab_size: int | None = None):
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.routing = routing
        self.on_step = on_step
        self.canvas_length = canvas_length
        self.prompt_ids: torch.Tensor | None = None
        self.seed: int | None = None  # set by the loop; applied inside the model's lock
        self.canvas = -1
        self.num_steps = 0
        # steps flushed but still on the model's device, unread (no host sync): the host work is
        # done for a batch of steps at once, or every step when on_step watches
        self._on_device: list[dict[str, torch.Tensor]] = []
        # per-step arrays on the host, [B, capacity, ...], grown by doubling, their first
        # num_steps - len(_on_device) steps filled: a snapshot is a view, not a stack of every
        # step so far
        self._buffers: dict[str, np.ndarray] = {}
        self._padded: torch.Tensor | None = None  # _topk's buffer
        self.step_meta: list[tuple[int, int, float, float]] = []  # canvas, remaining, temp, seconds
        self.encoder_routing: list[dict[str, np.ndarray]] = []
        self.pending: dict[str, torch.Tensor] = {}
        self.decoder_routes: list[tuple] = []  # (ids, weights, probabilities) per router call
        self.encoder_routes: list[tuple] = []
        self.num_encoder_routers = 0
        self._token_text: dict[int, str] = {}  # every id decoded so far
        self._decoded = np.zeros(vocab_size or 0, dtype=bool)  # ids in _token_text
        self._prompt_text: list[str] | None = None

    @contextlib.contextmanager
    def patched(self, patches: list[tuple[Any, str, Any]], model) -> Iterator[None]:
        """Hold the model's recording lock, set ``obj.name = fn`` for each patch, hook the
        routers and seed torch's generator (``self.seed``); undo all of it on exit.

        One recording per model at a time: a second thread waits for the first, so each run
        equals ``generate`` with its own seed and no wrapper outlives its recording.
        """
        with _model_lock(model):
            previous = [(obj, name, obj.__dict__.get(name)) for obj, name, _ in patches]
            try:
                for obj, name, fn in patches:
                    setattr(obj, name, fn)
                with self.router_hooks(model):
                    if self.seed is not None:  # inside the lock: another run cannot reseed
                        torch.manual_seed(self.seed)
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
                    handles.append(router.register_forward_hook(
                        _route_hook(self.decoder_routes, defer=True)))
                routers = encoder_routers(model)
                self.num_encoder_routers = len(routers)
                for router in routers:
                    handles.append(router.register_forward_hook(_route_hook(self.encoder_routes)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def reduce_logits(self, logits: torch.Tensor) -> None:
        """Confidence, entropy and top-k of one step's distribution, on the model's device.

        All from the log-probabilities ``lp`` (one fused log_softmax, float32 for any model
        dtype): the entropy ``-sum(exp(lp) * lp)`` as transformers' sampler takes it, top-k on
        ``lp`` (the logits' order) and ``p_top = exp(lp_top)``. Masked (-inf) logits are clamped
        to the lowest float first (``0 * -inf`` would be NaN): no check, no host sync.
        """
        lp = torch.log_softmax(logits, -1, dtype=torch.float32).clamp_(min=_LOWEST)
        entropy = torch.linalg.vecdot(lp.exp(), lp).neg_()
        top_lp, top_i = self._topk(lp, min(self.top_k, logits.shape[-1]))
        top_p = top_lp.exp()
        self.pending.update(confidence=top_p[..., 0], entropy=entropy, topk_ids=top_i,
                            topk_probs=top_p)

    def _topk(self, lp: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``lp.topk(k)``. torch's CPU kernel is several times slower on rows of about 130 to
        64·k entries than on rows of 64·k (measured: top-5 of 256 rows of 256 logits 0.40 ms,
        of 320 logits 0.13 ms), so such rows are copied into a buffer padded with -inf (below
        every clamped ``lp``: a pad never ranks), kept for the run."""
        length = lp.shape[-1]
        if lp.device.type != "cpu" or not 128 < length < 64 * k:
            return lp.topk(k, dim=-1)
        shape = (*lp.shape[:-1], 64 * k)
        if self._padded is None or self._padded.shape != shape:
            self._padded = torch.full(shape, -math.inf)
        self._padded[..., :length] = lp
        return self._padded.topk(k, dim=-1)

    def flush_step(self, remaining: int, temperature: float, start: float,
                   layers: int | None = None) -> None:
        """End the pending step: keep its tensors where they are and, when ``on_step`` watches
        or enough steps wait, copy the waiting steps to the host and hand this one to
        ``on_step``. Pending tensors not in ``fresh_inputs`` are copied first (a loop may change
        them in place later).

        ``layers``: keep only the last ``layers`` decoder router calls (extra decoder passes,
        like diffusers' corrector sweeps, also fire the hooks).
        """
        pending, self.pending = self.pending, {}
        for name in pending.keys() - self.fresh_inputs - _REDUCED:
            pending[name] = pending[name].clone()
        routes = self.decoder_routes[-layers:] if layers else self.decoder_routes[:]
        self.decoder_routes.clear()  # the hooks hold this list: empty it in place
        if routes:  # ids and weights stacked with the other steps'; the probabilities reduced now
            pending["routes"] = [r[:2] for r in routes]
            pending["router_entropy"] = _router_entropy(torch.stack(
                [_on(r[2], pending["canvas_in"].device) for r in routes]))
        self._on_device.append(pending)
        self.num_steps += 1
        seconds = time.perf_counter() - start
        self.step_meta.append((self.canvas, remaining, temperature, seconds))
        if self.on_step is None:
            if len(self._on_device) >= _STEPS_PER_COPY:
                self._to_buffers()
            return
        new_text = self._to_buffers()
        self.on_step(
            StepEvent(
                step=self.num_steps - 1,
                canvas=self.canvas,
                remaining=remaining,
                temperature=temperature,
                seconds=seconds,
                arrays={name: buf[:, self.num_steps - 1] for name, buf in self._buffers.items()},
                new_token_text=new_text,
                settings=self.settings(),
                snapshot=self.snapshot,
            )
        )

    def _to_buffers(self) -> dict[int, str]:
        """Copy the steps waiting on the device into the step buffers (one transfer) and decode
        the ids they show for the first time; returns those ids' text."""
        steps, self._on_device = self._on_device, []
        if not steps:
            return {}
        device = steps[0]["canvas_in"].device
        batch, length = steps[0]["canvas_in"].shape
        stacked = {name: _stack([s[name] for s in steps], dim=1).to(_TORCH_DTYPES[name])
                   for name in steps[0] if name not in ("routes", "router_entropy")}
        if "routes" in steps[0]:  # [S*N, B*L, k] -> [B, S, N, L, k]
            shape = (len(steps), len(steps[0]["routes"]), batch, length)
            for i, name in enumerate(("expert_ids", "expert_weights")):
                flat = torch.stack([_on(r[i], device) for s in steps for r in s["routes"]])
                stacked[name] = (flat.view(*shape, -1).permute(2, 0, 1, 3, 4)
                                 .to(_TORCH_DTYPES[name]))
            entropy = _stack([s["router_entropy"] for s in steps])  # [S, N, B*L]
            stacked["router_entropy"] = (entropy.view(shape).permute(2, 0, 1, 3)
                                         .to(_TORCH_DTYPES["router_entropy"]))
        host = _to_host(stacked)  # on the CPU views of ``stacked``: copied below
        count = len(steps)
        n = self.num_steps - count  # steps already in the buffers
        for name, value in host.items():
            buf = self._buffers.get(name)
            if buf is None or buf.shape[1] < n + count:
                grown = np.zeros((value.shape[0], max(16, 2 * (n + count)), *value.shape[2:]),
                                 _STEP_DTYPES[name])
                if buf is not None:
                    grown[:, :n] = buf[:, :n]
                buf = self._buffers[name] = grown
            buf[:, n : n + count] = value
        return self._decode_new(*(self._buffers[k][:, n : n + count] for k in _ID_ARRAYS
                                  if k in self._buffers))

    def settings(self) -> dict[str, Any]:
        """The run's settings as known so far (recording paths add what they know)."""
        return {"top_k": self.top_k}

    def flush_encoder(self) -> None:
        routes = self.encoder_routes[:]
        self.encoder_routes.clear()
        # an interrupted encoder pass leaves fewer routes than routers: keep only whole passes
        whole = len(routes) - len(routes) % max(1, self.num_encoder_routers)
        routes = routes[:whole]
        if not routes:
            return
        n, k = len(routes), routes[0][0].shape[-1]
        batch = self.prompt_ids.shape[0] if self.prompt_ids is not None else 1
        tokens = routes[0][0].shape[0] // batch
        ids, weights, entropy = _stack_routes(routes, routes[-1][0].device)
        packed = {  # [N, B*T, k] -> [B, T, N, k], in the trace's dtypes
            "encoder_expert_ids": ids.view(n, batch, tokens, k).permute(1, 2, 0, 3),
            "encoder_expert_weights": weights.view(n, batch, tokens, k).permute(1, 2, 0, 3),
            "encoder_router_entropy": entropy.view(n, batch, tokens).permute(1, 2, 0),
        }
        self.encoder_routing.append(_to_host({
            name: t.to(_TORCH_DTYPES[name]) for name, t in packed.items()}))

    def _decode_new(self, *arrays: np.ndarray) -> dict[int, str]:
        """Decode the ids in ``arrays`` not decoded yet in this run; returns their text."""
        ids = np.concatenate(arrays, axis=None)
        if ids.dtype.kind not in "iu":
            ids = ids.astype(np.int64)
        seen = self._decoded
        if seen.size and ids.size and ids.min() >= 0 and ids.max() < seen.size:
            ids = ids[~seen[ids]]  # a gather; most steps show no new id: nothing more to do
            if not ids.size:
                return {}
            new = np.unique(ids).astype(np.int64)
            seen[new] = True
            table = _text_table(self.tokenizer, seen.size)
            known = new[new < table.size]
            text = dict(zip(known.tolist(), table[known].tolist(), strict=True))
            if known.size < new.size:  # ids past the tokenizer's own (padded embeddings)
                text.update(token_texts(self.tokenizer, new[new >= table.size]))
        else:  # no vocabulary size (or ids outside it): look each distinct id up
            new = np.array([i for i in np.unique(ids) if int(i) not in self._token_text],
                           dtype=np.int64)
            text = token_texts(self.tokenizer, new)
        self._token_text.update(text)
        return text

    def stack(self, name: str, dtype, copy: bool = True) -> np.ndarray | None:
        """``name`` over all steps, ``[B, S, ...]``; None for routing arrays never recorded.
        With ``copy=False`` a view of the step buffer (valid until the next step)."""
        self._to_buffers()
        if name in self._buffers:
            view = self._buffers[name][:, : self.num_steps]
            return view.astype(dtype, copy=copy)
        if name not in _REQUIRED_SHAPES:
            return None
        batch = self.prompt_ids.shape[0] if self.prompt_ids is not None else 1
        tail = _REQUIRED_SHAPES[name](self.canvas_length, self.top_k)
        return np.zeros((batch, 0, *tail), dtype)

    def snapshot(self) -> Trace:
        """The steps recorded so far as a Trace (no output yet, ``complete`` False).

        Costs O(new steps), not O(all steps): its arrays are views of the step buffers (for one
        batch row; several rows are copied once, as the trace's layout is row-major) and its
        token text is the table decoded step by step. Read it before the next step.
        """
        batch = self.prompt_ids.shape[0] if self.prompt_ids is not None else 1
        return self.build(output_ids=np.zeros((batch, 0), np.int64),
                          tokens_per_forward=np.full(batch, np.nan),
                          meta={"complete": False, "settings": self.settings()}, views=True)

    def build(self, *, output_ids: np.ndarray, tokens_per_forward: np.ndarray, meta: dict,
              overrides: dict[str, np.ndarray] | None = None, views: bool = False) -> Trace:
        prompt = (self.prompt_ids.detach().cpu().numpy() if self.prompt_ids is not None
                  else np.zeros((1, 0), np.int64))
        arrays = {name: self.stack(name, dtype, copy=not views)
                  for name, dtype in _STEP_DTYPES.items()}
        arrays.update(overrides or {})
        if self.encoder_routing:
            for name in _ENCODER_ARRAYS:
                arrays[name] = np.concatenate([e[name] for e in self.encoder_routing], axis=1)
        meta_steps = np.array(self.step_meta, dtype=np.float64).reshape(-1, 4)
        # every step's ids are decoded as it is flushed; add the prompt's and the output's
        self._decode_new(prompt, np.asarray(output_ids))
        if self._prompt_text is None:
            self._prompt_text = self.tokenizer.batch_decode(prompt, skip_special_tokens=True)
        meta = {
            **meta,
            "text": self.tokenizer.batch_decode(output_ids, skip_special_tokens=True),
            "prompt_text": list(self._prompt_text),
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
            token_text=self._token_text if views else dict(self._token_text),
            meta=meta,
            validate=not views,  # a live snapshot is checked when the final trace is built
        )


# the per-step arrays that hold token ids (their tokens' text goes into the trace)
_ID_ARRAYS = ("canvas_in", "sampled", "draft", "topk_ids")
# the per-step arrays, in the Trace's dtypes
_STEP_DTYPES = {name: ARRAY_DTYPES[name] for name in (
    "canvas_in", "sampled", "draft", "accepted", "confidence", "entropy", "topk_ids",
    "topk_probs", "active", "stop", "expert_ids", "expert_weights", "router_entropy")}
# the same as torch dtypes (steps are narrowed on their device, before the copy to the host)
_TORCH_DTYPES = {name: torch.from_numpy(np.zeros(0, dtype)).dtype
                 for name, dtype in ARRAY_DTYPES.items()}
_ENCODER_ARRAYS = ("encoder_expert_ids", "encoder_expert_weights", "encoder_router_entropy")
# the pending tensors the collector makes itself (never changed afterwards)
_REDUCED = frozenset({"confidence", "entropy", "topk_ids", "topk_probs"})
# steps kept on the device between two copies to the host when nobody watches the run: at the
# real shape (30 layers of top-8 routing, 256 positions) about 0.8 MB a step
_STEPS_PER_COPY = 32
# trailing shape of each required per-step array, from (canvas_length, top_k)
_REQUIRED_SHAPES = {
    **{n: (lambda length, k: (length,)) for n in
       ("canvas_in", "sampled", "draft", "accepted", "confidence", "entropy")},
    "topk_ids": lambda length, k: (length, k),
    "topk_probs": lambda length, k: (length, k),
    "active": lambda length, k: (),
    "stop": lambda length, k: (),
}


_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_TEXT_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TEXT_TABLES_GUARD = threading.Lock()


def _text_table(tokenizer, size: int) -> np.ndarray:
    """The text of every id below ``size`` (`token_texts`, one batched call), kept per tokenizer
    for later runs: a step looks its new ids up instead of calling the tokenizer. At the real
    262,144-token vocabulary a step shows ~2,000 new ids (the re-noised canvas is uniform noise):
    ~6 ms of decoding a step on our CPU, against ~2 s once for the whole table."""
    with contextlib.suppress(TypeError):  # added tokens make a new table
        size = min(size, len(tokenizer))
    with _TEXT_TABLES_GUARD:
        table = _TEXT_TABLES.get(tokenizer)
        if table is None or table.size != size:
            texts = token_texts(tokenizer, np.arange(size))
            table = np.array([texts[i] for i in range(size)], dtype=object)
            _TEXT_TABLES[tokenizer] = table
    return table


@contextlib.contextmanager
def _model_lock(model) -> Iterator[None]:
    """The model's recording lock; recording it again from inside a recording is an error."""
    with _LOCKS_GUARD:
        entry = _LOCKS.setdefault(model, [threading.Lock(), None])
    lock, owner = entry
    if owner == threading.get_ident():
        raise RuntimeError(
            "dgviz.record was called on a model that this thread is already recording (from "
            "on_step?). Record it after the first run returns, or use another model instance.")
    with lock:
        entry[1] = threading.get_ident()
        try:
            yield
        finally:
            entry[1] = None


def _route_hook(sink: list, defer: bool = False):
    """A router's (ids, weights, entropy). ``defer``: keep its probabilities instead, and
    `flush_step` takes the entropy of all layers at once (a few ops a step, not per layer; the
    encoder, which may read a long prompt, takes its own at once)."""
    def hook(_module, _inputs, output):
        probs, weights, index = output[0], output[1], output[2]
        sink.append((index, weights, probs if defer else _router_entropy(probs)))

    return hook


def _router_entropy(probs: torch.Tensor) -> torch.Tensor:
    return torch.special.entr(probs.float()).sum(-1)  # entr(0) = 0


_LOWEST = torch.finfo(torch.float32).min


def _stack_routes(routes: list[tuple], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Stack the routers' (ids, weights, entropy) over layers on one device."""
    ids, weights, entropy = (torch.stack([_on(r[i], device) for r in routes]) for i in range(3))
    return ids, weights, entropy


def _stack(tensors: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """``torch.stack``; one tensor (a watched run copies every step) as a view, not a copy."""
    return tensors[0].unsqueeze(dim) if len(tensors) == 1 else torch.stack(tensors, dim)


def _on(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device`` (with a device map, routers' outputs live on several)."""
    return tensor if tensor.device == device else tensor.to(device, non_blocking=True)


def _to_host(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The tensors (numpy dtypes) as numpy arrays: CPU tensors as views, the others copied from
    their device in one transfer."""
    if all(t.device.type == "cpu" for t in tensors.values()):
        return {name: t.detach().numpy() for name, t in tensors.items()}
    return _through_one_buffer(tensors)


def _through_one_buffer(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Copy the tensors to the host as one buffer of their bytes, widest items first (every
    piece stays aligned), and view each piece back as its array."""
    names = sorted(tensors, key=lambda n: -tensors[n].element_size())
    flat = [tensors[n].detach().contiguous().view(-1).view(torch.uint8) for n in names]
    packed = torch.cat(flat).cpu().numpy()
    out, offset = {}, 0
    for name, piece in zip(names, flat, strict=True):
        t = tensors[name]
        dtype = torch.empty(0, dtype=t.dtype).numpy().dtype
        out[name] = packed[offset : offset + piece.numel()].view(dtype).reshape(tuple(t.shape))
        offset += piece.numel()
    return out


def record_keeping_partial(run: Callable[[], Any],
                           finish: Callable[[bool, Any], Trace]) -> Trace:
    """``finish(True, run())``; on Ctrl-C the partial trace ``finish(False, None)`` (with a
    warning), and on any other error the exception carries it as ``err.partial_trace``."""
    try:
        output = run()
    except KeyboardInterrupt:
        trace = finish(False, None)
        warnings.warn(
            f"Recording interrupted after {trace.num_steps} steps; returning the partial trace "
            "(trace.complete is False).",
            stacklevel=4,  # the caller of dgviz.record
        )
        return trace
    except Exception as err:
        with contextlib.suppress(Exception):
            err.partial_trace = finish(False, None)  # type: ignore[attr-defined]
        raise
    return finish(True, output)
