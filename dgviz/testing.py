"""Tiny, untrained DiffusionGemma models built in code: for tests, benchmarks and docs.

They have the real architecture (encoder + decoder, MoE routers, the real generate loop) at a
size that runs in milliseconds on a CPU, and need nothing from a model hub.
"""

from __future__ import annotations

import torch

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]


def tiny_tokenizer(vocab_size: int = 64):
    """A word-level tokenizer whose words are ``w4 … w{vocab_size-4}`` plus a few real words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["the", "cat", "sat", "on", "mat", "\n", "  ", "<b>", "1", "2", "3", "+", "="]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in words:
        if len(vocab) < vocab_size - 3:  # the last 3 ids are the image tokens
            vocab.setdefault(word, len(vocab))
    while len(vocab) < vocab_size:
        vocab[f"w{len(vocab)}"] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
        unk_token="<unk>",
    )
    tok.chat_template = (
        "{% for m in messages %}<bos> {{ m['role'] }} {{ m['content'] }} <eos> {% endfor %}"
        "{% if add_generation_prompt %}<bos> model {% endif %}"
    )
    return tok


def tiny_config(
    *,
    vocab_size: int = 64,
    canvas_length: int = 16,
    num_experts: int = 8,
    top_k_experts: int = 2,
    num_layers: int = 2,
    hidden_size: int = 32,
):
    """A `DiffusionGemmaConfig` small enough to generate in milliseconds on a CPU."""
    from transformers import DiffusionGemmaConfig, Gemma4VisionConfig
    from transformers.models.diffusion_gemma import DiffusionGemmaTextConfig

    text = DiffusionGemmaTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        global_head_dim=16,
        num_experts=num_experts,
        top_k_experts=top_k_experts,
        moe_intermediate_size=hidden_size,
        layer_types=["sliding_attention"] * (num_layers - 1) + ["full_attention"],
        sliding_window=64,
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    # The default vision tower alone has ~167M parameters; dgviz never reads images.
    vision = Gemma4VisionConfig(
        hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=1,
        num_key_value_heads=1, head_dim=8,
    )
    return DiffusionGemmaConfig(
        text_config=text,
        vision_config=vision,
        canvas_length=canvas_length,
        boi_token_id=vocab_size - 3,
        eoi_token_id=vocab_size - 2,
        image_token_id=vocab_size - 1,
    )


def tiny_model(seed: int = 0, **config_kwargs):
    """``(model, tokenizer)``: a randomly initialised tiny DiffusionGemma and its tokenizer."""
    from transformers import DiffusionGemmaForBlockDiffusion

    config = tiny_config(**config_kwargs)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DiffusionGemmaForBlockDiffusion(config).eval()
    return model, tiny_tokenizer(config.text_config.vocab_size)
