"""The protocol a custom acceptance rule implements to run inside transformers' ``generate``.

``generate`` asks its private ``_prepare_sampler(generation_config)`` for a sampler and calls its
``initialize_canvas``, ``accept_canvas`` and ``renoise_canvas`` (the interface of transformers'
`EntropyBoundSampler`); `dgviz.record(sampler=...)` replaces what ``_prepare_sampler`` returns.
`CommitSampler` implements that interface for rules that commit positions by entropy on a
budget; `dgviz.schedules` defines the rules users pick (`FixedRateSampler`, `CosineSampler`).
"""

from __future__ import annotations

import math
from typing import Any

import torch


class CommitSampler:
    """Commit-by-entropy rule: after step ``i`` of a canvas, ``budget(i)`` positions are committed.

    Each step it keeps every position committed earlier (with the token it was committed with)
    and commits the lowest-entropy uncommitted positions until ``budget(i)`` are committed; the
    rest is re-noised with uniform random tokens, exactly as transformers' `EntropyBoundSampler`
    does (this class reuses its ``initialize_canvas`` and ``renoise_canvas``). Unlike the
    entropy-bound rule, commits are never taken back. The generate loop still ends a canvas at
    ``max_denoising_steps`` or when its adaptive stop fires, and its output is the last argmax
    draft, as with the default sampler.
    """

    name = "commit"

    def __init__(self, generation_config: Any, model: Any):
        cfg = model.config
        self.canvas_length = int(cfg.canvas_length)
        self.vocab_size = int(cfg.get_text_config(decoder=True).vocab_size)
        self.max_denoising_steps = int(generation_config.max_denoising_steps)
        self.accepted_token_mask: torch.Tensor | None = None
        self._committed: torch.Tensor | None = None
        self._step = 0

    # the EntropyBoundSampler interface -----------------------------------------------------
    def initialize_canvas(self, batch_size: int, device: torch.device) -> torch.LongTensor:
        """A fresh canvas of uniform random tokens; called at the start of every canvas."""
        self._committed = None
        self._step = 0
        return torch.randint(0, self.vocab_size, (batch_size, self.canvas_length), device=device)

    def accept_canvas(self, current_canvas, denoiser_canvas, logits, cur_step):
        self._step += 1
        batch, length = current_canvas.shape
        committed = self._committed
        if committed is None or committed.shape != (batch, length):
            committed = torch.zeros((batch, length), dtype=torch.bool, device=current_canvas.device)
        entropy = torch.distributions.Categorical(logits=logits.float()).entropy()
        want = min(length, max(0, int(self.budget(self._step))))
        # committed positions sort last; uncommitted ones by entropy, lowest first
        order = torch.where(committed, torch.full_like(entropy, math.inf), entropy)
        idx = order.argsort(dim=-1, stable=True)
        rank = torch.empty_like(idx)
        rank.scatter_(-1, idx, torch.arange(length, device=idx.device).expand(batch, length))
        room = (want - committed.sum(-1, keepdim=True)).clamp(min=0)
        newly = (rank < room) & ~committed
        accepted = torch.where(newly, denoiser_canvas, current_canvas)
        self._committed = committed | newly
        self.accepted_token_mask = self._committed.clone()
        return accepted

    def renoise_canvas(self, accepted_canvas, cur_step):
        noise = torch.randint(0, self.vocab_size, accepted_canvas.shape,
                              device=accepted_canvas.device)
        return torch.where(self.accepted_token_mask, accepted_canvas, noise)

    # the rule ----------------------------------------------------------------------------
    def budget(self, step: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Settings recorded in ``Trace.settings`` (the entropy bound does not apply)."""
        return {"acceptance": self.name, "entropy_bound": None}
