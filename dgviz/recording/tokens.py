"""Prompts in, token text out: the recorder's side of the tokenizer."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch


def text_tokenizer(tokenizer: Any) -> Any:
    """A processor wraps its tokenizer; we decode with the tokenizer itself."""
    inner = getattr(tokenizer, "tokenizer", None)
    return inner if inner is not None and hasattr(inner, "convert_ids_to_tokens") else tokenizer


def check_tokenizer(model: Any, tok: Any) -> None:
    vocab = model.config.get_text_config(decoder=True).vocab_size
    try:
        size = len(tok)
    except TypeError:
        return
    if size > vocab:
        raise ValueError(
            f"This tokenizer knows {size} tokens but the model's vocabulary has {vocab}: they do "
            "not belong together. Load both from the same checkpoint directory."
        )


def encode_prompt(
    tokenizer: Any, prompt: Any, device: torch.device | str = "cpu",
    pad_token_id: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Turn a prompt (text, chat, batch of texts, or ids) into ``[B, P]`` input ids (+ mask).

    Ids may be a list of ints, a list of lists of ints (a batch, as tokenizers return it; rows
    of different lengths are left-padded with ``pad_token_id``), or an integer numpy array or
    torch tensor of any width, on any device. The result is on ``device``.
    """
    mask = None
    if _looks_like_ids(prompt):
        ids, mask = _ids_tensor(prompt, pad_token_id)
    elif isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("The prompt is blank: give some text, a chat or input ids.")
        ids = text_tokenizer(tokenizer)(prompt, return_tensors="pt")["input_ids"]
    elif isinstance(prompt, list | tuple) and prompt and all(isinstance(m, dict) for m in prompt):
        if not all("role" in m and "content" in m for m in prompt):
            raise ValueError('A chat prompt is a list of {"role": ..., "content": ...} messages.')
        rendered = tokenizer.apply_chat_template(
            list(prompt), add_generation_prompt=True, tokenize=True, return_tensors="pt",
            return_dict=True,
        )
        ids = rendered["input_ids"]
    elif isinstance(prompt, list | tuple) and prompt and all(isinstance(p, str) for p in prompt):
        blank = [i for i, p in enumerate(prompt) if not p.strip()]
        if blank:
            raise ValueError(f"Batch prompt {blank[0]} is blank: every prompt needs some text.")
        tok = text_tokenizer(tokenizer)
        side = getattr(tok, "padding_side", "right")
        try:
            tok.padding_side = "left"  # canvases follow the prompt: pad on the left
            enc = tok(list(prompt), return_tensors="pt", padding=True)
        finally:
            tok.padding_side = side
        ids, mask = enc["input_ids"], enc["attention_mask"]
    else:
        raise TypeError(
            "prompt must be a string, a chat (list of role/content dicts), a list of strings, "
            f"or input ids; got {type(prompt).__name__}"
            + (" (empty)" if isinstance(prompt, list | tuple) and not prompt else "")
            + "."
        )
    if ids.shape[-1] == 0:
        raise ValueError("The prompt tokenized to zero tokens: give some text or ids.")
    ids = ids.to(device)
    return ids, (mask.to(device) if mask is not None else None)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _looks_like_ids(prompt: Any) -> bool:
    if isinstance(prompt, torch.Tensor | np.ndarray):
        return True
    if not isinstance(prompt, list | tuple) or not prompt:
        return False
    rows = prompt if all(isinstance(r, list | tuple) for r in prompt) else [prompt]
    return all(not isinstance(i, str | dict) for r in rows for i in r)


def _ids_tensor(prompt: Any, pad_token_id: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Ids as a ``[B, P]`` int64 tensor (on the prompt's device), with a mask when padded."""
    if isinstance(prompt, torch.Tensor | np.ndarray):
        dtype = prompt.dtype
        is_int = (not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool
                  if isinstance(prompt, torch.Tensor) else dtype.kind in "iu")
        if not is_int:
            raise TypeError(f"Prompt ids must be integers, got an array of {dtype}: token ids "
                            "are whole numbers (convert with .long() / .astype(int) if intended).")
        ids = torch.as_tensor(prompt).long() if isinstance(prompt, np.ndarray) else prompt.long()
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or 0 in ids.shape:
            raise ValueError(f"Prompt ids must be [length] or [batch, length] and not empty, got "
                             f"shape {tuple(ids.shape)}.")
        return ids, None
    rows = [list(r) for r in prompt] if isinstance(prompt[0], list | tuple) else [list(prompt)]
    bad = next((i for r in rows for i in r if not _is_int(i)), None)
    if bad is not None or any(not r for r in rows):
        raise TypeError("Prompt ids must be lists of integers (token ids), with no empty row"
                        + (f"; got {bad!r}." if bad is not None else "."))
    width = max(len(r) for r in rows)
    if all(len(r) == width for r in rows):
        return torch.tensor(rows, dtype=torch.long), None
    if pad_token_id is None:
        raise ValueError("The batch's id rows have different lengths and the tokenizer has no "
                         "pad token to left-pad them with: pad them yourself (and pass "
                         "attention_mask=).")
    ids = torch.tensor([[pad_token_id] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask


def check_ids(model: Any, ids: torch.Tensor) -> None:
    vocab = model.config.get_text_config(decoder=True).vocab_size
    low, high = (int(v) for v in ids.aminmax())
    if high >= vocab or low < 0:
        raise ValueError(
            f"The prompt has token ids outside the model's vocabulary (0..{vocab - 1}): "
            f"min {low}, max {high}. Was it tokenized with another tokenizer?"
        )


def token_texts(tokenizer: Any, ids: np.ndarray) -> dict[int, str]:
    """Decoded text of each distinct id, keeping the leading space a token carries.

    One call into the tokenizers library for all ids when the tokenizer has a Rust backend
    (the real vocabulary's 262,144 tokens make a Python loop of ``decode`` calls visible).
    """
    uniq = [int(i) for i in np.unique(ids)]
    if not uniq:
        return {}
    pieces = tokenizer.convert_ids_to_tokens(uniq)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if callable(getattr(backend, "decode_batch", None)):
        texts = backend.decode_batch([[i] for i in uniq], skip_special_tokens=False)
    else:
        texts = [tokenizer.decode([i], skip_special_tokens=False,
                                  clean_up_tokenization_spaces=False) for i in uniq]
    out = {}
    for i, piece, text in zip(uniq, pieces, texts, strict=True):
        if isinstance(piece, str) and piece[:1] in ("▁", "Ġ") and not text.startswith(" "):
            text = " " + text  # sentencepiece / byte-BPE word starts decode without their space
        out[i] = text
    return out
