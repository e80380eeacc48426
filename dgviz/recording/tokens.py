"""Prompts in, token text out: the recorder's side of the tokenizer."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def text_tokenizer(tokenizer: Any) -> Any:
    """A processor wraps its tokenizer; we decode with the tokenizer itself."""
    if tokenizer is None:
        raise TypeError(
            "dgviz.record needs the model's tokenizer (or processor) to read the prompt and to "
            "show token text: record(model, tokenizer, prompt)."
        )
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
    tokenizer: Any, prompt: Any, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Turn a prompt (text, chat, batch of texts, or ids) into ``[B, P]`` input ids (+ mask)."""
    mask = None
    if isinstance(prompt, torch.Tensor | np.ndarray) or (
        isinstance(prompt, list | tuple) and prompt and all(isinstance(i, int) for i in prompt)
    ):
        ids = torch.as_tensor(np.asarray(prompt), dtype=torch.long)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2:
            raise ValueError(
                f"Prompt ids must be [length] or [batch, length], got shape {tuple(ids.shape)}.")
    elif isinstance(prompt, str):
        if not prompt:
            raise ValueError("The prompt is empty: give some text, a chat or input ids.")
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
        if not all(prompt):
            raise ValueError("One of the batch prompts is empty.")
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


def check_ids(model: Any, ids: torch.Tensor) -> None:
    vocab = model.config.get_text_config(decoder=True).vocab_size
    if ids.numel() and (int(ids.max()) >= vocab or int(ids.min()) < 0):
        raise ValueError(
            f"The prompt has token ids outside the model's vocabulary (0..{vocab - 1}): "
            f"min {int(ids.min())}, max {int(ids.max())}. Was it tokenized with another tokenizer?"
        )


def token_texts(tokenizer: Any, ids: np.ndarray) -> dict[int, str]:
    """Decoded text of each distinct id, keeping the leading space a token carries."""
    uniq = [int(i) for i in np.unique(ids)]
    if not uniq:
        return {}
    pieces = tokenizer.convert_ids_to_tokens(uniq)
    out = {}
    for i, piece in zip(uniq, pieces, strict=True):
        text = tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if isinstance(piece, str) and piece[:1] in ("▁", "Ġ") and not text.startswith(" "):
            text = " " + text  # sentencepiece / byte-BPE word starts decode without their space
        out[i] = text
    return out
