"""The step collector: one run's per-step arrays, reduced on the device, copied to the host once
per step, and built into a `Trace`. Shared by both recording loops."""

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

from ..trace import Trace
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
    lets the router hooks fill their sinks, and calls `flush_step` once per step.
    """

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
        # per-step arrays, [B, capacity, ...], grown by doubling: a snapshot is a view, not a
        # stack of every step so far
        self._buffers: dict[str, np.ndarray] = {}
        self.step_meta: list[tuple[int, int, float, float]] = []  # canvas, remaining, temp, seconds
        self.encoder_routing: list[dict[str, np.ndarray]] = []
        self.pending: dict[str, torch.Tensor] = {}
        self.decoder_routes: list[tuple] = []
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

        Top-k runs on the logits (the same order as the probabilities). The rest comes from one
        exp pass over the logits shifted by their maximum ``m`` (two temporaries the size of the
        logits, no softmax, no log per token): with ``s = l - m`` and ``z = sum(exp(s))``,
        ``p_top = exp(s_top) / z`` and ``entropy = log z - sum(exp(s) * s) / z``.
        """
        top_logits, top_i = _topk(logits, min(self.top_k, logits.shape[-1]))
        top_logits = top_logits.float()
        shifted = logits - top_logits[..., :1]  # float32 for any model dtype; max 0
        on_cpu = shifted.device.type == "cpu"
        if not on_cpu:  # masked (-inf) logits: 0 * -inf would be NaN (a check would sync)
            shifted.clamp_(min=_LOWEST)
        entropy, z = _entropy(shifted)
        if on_cpu and bool(entropy.isnan().any()):  # masked logits: clamp only when there are
            entropy, z = _entropy(shifted.clamp_(min=_LOWEST))
        top_p = (top_logits - top_logits[..., :1]).exp() / z[..., None]
        self.pending.update(confidence=top_p[..., 0], entropy=entropy, topk_ids=top_i,
                            topk_probs=top_p)

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
            ids, weights, entropy = _stack_routes(routes, pending["canvas_in"].device)
            pending["expert_ids"] = ids.view(n, batch, length, k).transpose(0, 1)
            pending["expert_weights"] = weights.view(n, batch, length, k).transpose(0, 1)
            pending["router_entropy"] = entropy.view(n, batch, length).transpose(0, 1)
        # on the CPU, views of generate's tensors: _append copies them into the step buffers
        host = self._append(_to_host(pending, copy=False))
        seconds = time.perf_counter() - start
        self.step_meta.append((self.canvas, remaining, temperature, seconds))
        new_text = self._decode_new(*(host[k] for k in _ID_ARRAYS if k in host))
        if self.on_step is not None:
            self.on_step(
                StepEvent(
                    step=self.num_steps - 1,
                    canvas=self.canvas,
                    remaining=remaining,
                    temperature=temperature,
                    seconds=seconds,
                    arrays=host,
                    new_token_text=new_text,
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
        # an interrupted encoder pass leaves fewer routes than routers: keep only whole passes
        whole = len(routes) - len(routes) % max(1, self.num_encoder_routers)
        routes = routes[:whole]
        if not routes:
            return
        n, k = len(routes), routes[0][0].shape[-1]
        batch = self.prompt_ids.shape[0] if self.prompt_ids is not None else 1
        tokens = routes[0][0].shape[0] // batch
        ids, weights, entropy = _stack_routes(routes, routes[-1][0].device)
        packed = {  # [N, B*T, k] -> [B, T, N, k]
            "encoder_expert_ids": ids.view(n, batch, tokens, k).permute(1, 2, 0, 3),
            "encoder_expert_weights": weights.view(n, batch, tokens, k).permute(1, 2, 0, 3),
            "encoder_router_entropy": entropy.view(n, batch, tokens).permute(1, 2, 0),
        }
        self.encoder_routing.append(_to_host(packed))

    def _append(self, host: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Write one step's arrays into the step buffers (doubling them when full); returns
        views of the rows written (the Trace's dtypes; they never change afterwards)."""
        n = self.num_steps
        rows = {}
        for name, value in host.items():
            buf = self._buffers.get(name)
            if buf is None or buf.shape[1] == n:
                grown = np.zeros((value.shape[0], max(16, 2 * n), *value.shape[1:]),
                                 _STEP_DTYPES.get(name, value.dtype))
                if buf is not None:
                    grown[:, :n] = buf[:, :n]
                buf = self._buffers[name] = grown
            buf[:, n] = value
            rows[name] = buf[:, n]
        self.num_steps = n + 1
        return rows

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
            for name, dtype in (("encoder_expert_ids", np.int16),
                                ("encoder_expert_weights", np.float16),
                                ("encoder_router_entropy", np.float16)):
                parts = [e[name] for e in self.encoder_routing]
                arrays[name] = np.concatenate(parts, axis=1).astype(dtype)
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
_STEP_DTYPES = {
    "canvas_in": np.int32, "sampled": np.int32, "draft": np.int32, "accepted": bool,
    "confidence": np.float32, "entropy": np.float32, "topk_ids": np.int32,
    "topk_probs": np.float16, "active": bool, "stop": bool, "expert_ids": np.int16,
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
    `_stack_routes` takes the entropy of all layers at once (a few ops a step, not per layer)."""
    def hook(_module, _inputs, output):
        probs, weights, index = output[0], output[1], output[2]
        sink.append((index, weights, probs if defer else _router_entropy(probs)))

    return hook


def _router_entropy(probs: torch.Tensor) -> torch.Tensor:
    probs = probs.float()
    return -(probs * probs.clamp_min(1e-30).log()).sum(-1)


_LOWEST = torch.finfo(torch.float32).min


def _entropy(shifted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy (nats) and normaliser ``z`` of logits shifted so that their maximum is 0."""
    e = shifted.exp()
    z = e.sum(-1)
    return z.log() - torch.linalg.vecdot(e, shifted) / z, z


def _topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``logits.topk(k)``. torch's CPU kernel is several times slower on rows of about 130 to
    64·k entries than on rows of 64·k (measured: top-5 of 256 rows of 256 logits 0.53 ms, of
    320 logits 0.16 ms), so such rows are padded with -inf; a row with fewer than k finite
    logits, where a pad could rank, is taken unpadded."""
    length = logits.shape[-1]
    if logits.device.type != "cpu" or not 128 < length < 64 * k:
        return logits.topk(k, dim=-1)
    padded = torch.nn.functional.pad(logits, (0, 64 * k - length), value=-math.inf)
    values, ids = padded.topk(k, dim=-1)
    if bool((ids >= length).any()):
        return logits.topk(k, dim=-1)
    return values, ids


def _stack_routes(routes: list[tuple], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Stack the routers' (ids, weights, entropy) over layers on one device: with a device map
    the layers (and their routers' outputs) live on several. A third item with the ids' rank is
    a deferred hook's probabilities: their entropy is taken here."""
    if any(r[0].device != device for r in routes):
        routes = [tuple(t.to(device, non_blocking=True) for t in r) for r in routes]
    ids, weights, third = (torch.stack([r[i] for r in routes]) for i in range(3))
    return ids, weights, _router_entropy(third) if third.ndim == ids.ndim else third


def _to_host(tensors: dict[str, torch.Tensor], copy: bool = True) -> dict[str, np.ndarray]:
    """Copy a step's tensors to the host in one transfer (packed as float32, then unpacked).

    Token and expert ids stay exact: float32 holds integers up to 2**24 (the real vocabulary is
    262,144 tokens). ``copy=False``: CPU tensors come back as views (generate reuses some of
    them in place: the caller copies them at once).
    """
    names = list(tensors)
    if all(t.device.type == "cpu" for t in tensors.values()):  # nothing to transfer
        return {n: t.detach().numpy().copy() if copy else t.detach().numpy()
                for n, t in tensors.items()}
    flat = [tensors[n].detach().reshape(-1).to(torch.float32) for n in names]
    packed = torch.cat(flat).cpu().numpy()
    out, offset = {}, 0
    for name, piece in zip(names, flat, strict=True):
        size = piece.numel()
        out[name] = packed[offset : offset + size].reshape(tuple(tensors[name].shape))
        offset += size
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
