"""Held tokens inside transformers' generate loop: ``record(hold=...)`` and `dgviz.branch`.

A held position carries a fixed token from a given step to the end of its canvas. Three things
make that true in the model's own loop, without touching its random draws:

1. the canvas the decoder reads holds the token (so the model conditions on it);
2. its logits become one-hot on the token, after the temperature schedule (a logits processor
   at the end of generate's list): it is sampled, it is the argmax draft (the canvas's output),
   its entropy is 0, so the entropy-bound rule accepts it first and it costs nothing of the
   bound, and the self-conditioning of the next step sees a certain token;
3. the sampler's accepted mask includes it, so it is never re-noised (custom samplers too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Hold:
    """``token`` at ``position`` of ``canvas`` from global step ``from_step`` (None: from the
    canvas's first step) to the canvas's end; ``row`` None holds it in every batch row."""

    canvas: int
    position: int
    token: int
    row: int | None = None
    from_step: int | None = None

    def as_meta(self) -> dict[str, Any]:
        return asdict(self)


class Holds:
    """The holds of one run, looked up per (canvas, global step) as ``[B, L]`` mask + tokens."""

    def __init__(self, holds: list[Hold], batch_size: int, canvas_length: int):
        self.holds = list(holds)
        self.batch_size = batch_size
        self.canvas_length = canvas_length
        self._cache: dict[tuple[int, tuple[Hold, ...]], tuple[torch.Tensor, torch.Tensor]] = {}

    def at(self, canvas: int, step: int, device: torch.device
           ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(mask, tokens)`` held at ``step`` of ``canvas``, or None when nothing is held.
        Later holds of the same position win (a branch's edit over an earlier hold)."""
        live = tuple(h for h in self.holds if h.canvas == canvas
                     and (h.from_step is None or h.from_step <= step))
        if not live:
            return None
        key = (canvas, live)
        if key not in self._cache:
            mask = torch.zeros((self.batch_size, self.canvas_length), dtype=torch.bool)
            tokens = torch.zeros((self.batch_size, self.canvas_length), dtype=torch.long)
            for h in live:
                rows = slice(None) if h.row is None else slice(h.row, h.row + 1)
                mask[rows, h.position] = True
                tokens[rows, h.position] = h.token
            self._cache[key] = (mask.to(device), tokens.to(device))
        return self._cache[key]


class HoldLogits:
    """The logits processor of item 2: one-hot logits on the held tokens (``held()`` gives the
    current step's ``(mask, tokens)`` or None)."""

    def __init__(self, held):
        self.held = held

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # two parameters: transformers' LogitsProcessorList then passes no step keywords
        held = self.held()
        if held is None:
            return scores
        mask, tokens = held
        # the lowest finite value, not -inf: self-conditioning and entropies stay finite
        one_hot = torch.full_like(scores, torch.finfo(scores.dtype).min)
        one_hot.scatter_(-1, tokens.unsqueeze(-1), 0.0)
        return torch.where(mask.unsqueeze(-1), one_hot, scores)


@dataclass
class Fork:
    """What a branch replays and changes (built by `dgviz.branch`): ``holds`` are the parent's
    holds before the fork plus the edits; ``changes`` are the settings changed mid-run, in step
    order (the parent's before the fork, then the branch's own), each
    ``{"step": global step, "settings": {name: value}}``."""

    step: int
    holds: list[Hold]
    changes: list[dict[str, Any]]
    meta: dict[str, Any]  # recorded as the branch's ``meta["fork"]``


# settings a branch may change from its fork step on (the loop reads them at every step)
FORK_SETTINGS = ("entropy_bound", "t_min", "t_max", "stability_threshold",
                 "confidence_threshold")


def resolve_token(tokenizer: Any, value: Any, vocab: int, what: str) -> int:
    """A token id from an id or from text that is exactly one token of ``tokenizer``."""
    from .arguments import as_int

    if isinstance(value, str):
        tok = getattr(tokenizer, "tokenizer", tokenizer)
        ids = tok(value, add_special_tokens=False)["input_ids"] if value else []
        if len(ids) != 1:
            known = tok.convert_tokens_to_ids(value) if value else None
            if isinstance(known, int) and known != getattr(tok, "unk_token_id", None):
                return known  # a vocabulary entry, e.g. a special token
            pieces = tok.convert_ids_to_tokens(ids) if ids else []
            raise ValueError(
                f"{what}: {value!r} is {len(ids)} tokens {pieces} for this tokenizer; a held "
                "position takes exactly one token (pass its id, or text that is one token).")
        unknown = getattr(tok, "unk_token_id", None)
        if ids[0] == unknown and value != getattr(tok, "unk_token", None):
            raise ValueError(
                f"{what}: {value!r} is not in this tokenizer's vocabulary (it would be held as "
                f"the unknown token {tok.unk_token!r}): pass text the tokenizer knows, or an id.")
        return int(ids[0])
    return as_int(what, value, low=0, high=vocab - 1,
                  hint=" (a token id of the model's vocabulary, or text that is one token)")


def parse_hold(hold: Any, tokenizer: Any, model: Any, generate_kwargs: dict[str, Any]
               ) -> list[Hold]:
    """``record(hold={position: token})``: positions of the generated sequence (canvas
    ``p // L``, position ``p % L``), held from each canvas's first step, in every batch row."""
    from collections.abc import Mapping

    from .arguments import as_int
    from .model_access import vocab_size

    if not isinstance(hold, Mapping):
        raise TypeError(f"hold must be a dict {{position: token}} (got {type(hold).__name__}); "
                        "positions count from the first generated token.")
    length = int(model.config.canvas_length)
    new_tokens = generate_kwargs.get("max_new_tokens") or \
        getattr(model.generation_config, "max_new_tokens", None) or length
    limit = -(-int(new_tokens) // length) * length  # whole canvases
    out = []
    for position, token in hold.items():
        p = as_int("hold position", position, low=0, high=limit - 1,
                   hint=f" (positions of the generated sequence: {limit} with max_new_tokens="
                        f"{new_tokens})")
        t = resolve_token(tokenizer, token, vocab_size(model), f"hold[{p}]")
        out.append(Hold(canvas=p // length, position=p % length, token=t))
    return out
