"""The demo model's configuration and training objective, on the real DiffusionGemma modules."""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from .vocab import BOI, EOI, IMAGE, build_vocab

CANVAS_LENGTH = 88  # the longest answer (81 sudoku digits) + eos, rounded up to a multiple of 8

# Defaults for `model.generate` on the demo tasks: one canvas, otherwise the library's sampler.
GENERATION_DEFAULTS = {
    "max_new_tokens": CANVAS_LENGTH,
    "max_denoising_steps": 48,
    "t_min": 0.4,
    "t_max": 0.8,
    "stability_threshold": 1,
    "confidence_threshold": 0.005,
}
ENTROPY_BOUND = 0.1


def build_config(hidden_size: int = 64, num_layers: int = 4, num_experts: int = 8, top_k: int = 2,
                 num_heads: int = 2):
    from transformers import DiffusionGemmaConfig, DiffusionGemmaTextConfig, Gemma4VisionConfig

    vocab = build_vocab()
    text_config = DiffusionGemmaTextConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=1,
        head_dim=32,
        global_head_dim=32,
        layer_types=["sliding_attention"] * (num_layers - 1) + ["full_attention"],
        sliding_window=512,
        max_position_embeddings=1024,
        num_experts=num_experts,
        top_k_experts=top_k,
        moe_intermediate_size=hidden_size,
        pad_token_id=vocab["<pad>"],
        eos_token_id=vocab["<eos>"],
        bos_token_id=vocab["<bos>"],
    )
    # The vision tower is unused by the demo tasks; keep it negligible.
    vision_config = Gemma4VisionConfig(
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=8,
        position_embedding_size=64,
    )
    return DiffusionGemmaConfig(
        text_config=text_config,
        vision_config=vision_config,
        boi_token_id=vocab[BOI],
        eoi_token_id=vocab[EOI],
        image_token_id=vocab[IMAGE],
        canvas_length=CANVAS_LENGTH,
        pad_token_id=vocab["<pad>"],
        eos_token_id=vocab["<eos>"],
        bos_token_id=vocab["<bos>"],
    )


def generation_config(pad_token_id: int, eos_token_id: int, bos_token_id: int,
                      **overrides):
    """The checkpoint's `generate` defaults: `GENERATION_DEFAULTS`, then ``overrides`` (the 9x9
    specialist starts hotter, ``t_max=1.3``: see docs/demo-model.md)."""
    from transformers import DiffusionGemmaGenerationConfig, EntropyBoundSamplerConfig

    return DiffusionGemmaGenerationConfig(
        **{**GENERATION_DEFAULTS, **overrides},
        sampler_config=EntropyBoundSamplerConfig(entropy_bound=ENTROPY_BOUND),
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=bos_token_id,
    )


def cache_kwarg(module) -> str:
    """transformers 5.23 calls the cache argument `past_key_values`; 5.24 renamed it `cache`."""
    parameters = inspect.signature(module.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def softcapped_logits(model, hidden_states: torch.Tensor) -> torch.Tensor:
    """The model's own head: tied lm_head followed by the final logit softcap."""
    cap = model.final_logit_softcapping
    logits = model.lm_head(hidden_states).float()
    return torch.tanh(logits / cap) * cap if cap else logits


class RouterRecorder:
    """Forward hooks on routers; keeps (router_probs, top_k_index) of each call while active."""

    def __init__(self, routers):
        self.active = False
        self.records: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in routers]
        self._handles = [
            router.register_forward_hook(self._hook(index)) for index, router in enumerate(routers)
        ]

    def _hook(self, index):
        def hook(_module, _inputs, output):
            if self.active:
                probs, _weights, top_k_index = output
                self.records[index].append((probs, top_k_index))

        return hook

    def clear(self):
        for records in self.records:
            records.clear()

    def remove(self):
        for handle in self._handles:
            handle.remove()


def switch_balance_loss(probs: torch.Tensor, top_k_index: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer load balancing: E * sum_e (share routed to e) * (mean prob of e)."""
    num_experts = probs.shape[-1]
    assignments = F.one_hot(top_k_index, num_experts).float().sum(dim=1)  # [tokens, E]
    fraction_routed = assignments.mean(dim=0) / top_k_index.shape[-1]
    mean_probability = probs.float().mean(dim=0)
    return num_experts * (fraction_routed * mean_probability).sum()


def corrupt(canvas: torch.Tensor, vocab_size: int, generator: torch.Generator, eps: float = 1e-3):
    """Replace each position by a uniform random token with probability t ~ U(eps, 1) per example,
    the same uniform noise `EntropyBoundSampler` starts from and re-noises with."""
    batch = canvas.shape[0]
    t = eps + (1 - eps) * torch.rand(batch, 1, generator=generator)
    replace = torch.rand(canvas.shape, generator=generator) < t
    noise = torch.randint(0, vocab_size, canvas.shape, generator=generator)
    return torch.where(replace, noise, canvas)


def training_losses(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    canvas: torch.Tensor,
    recorder: RouterRecorder,
    generator: torch.Generator,
    self_condition: bool,
    pad_weight: float = 0.1,
) -> dict[str, torch.Tensor]:
    """One batch of the DiffusionGemma objective, through the model's own forward passes.

    The encoder fills the KV cache with the (left-padded) prompt and is trained autoregressively;
    the decoder reads that cache and denoises a corrupted canvas; with `self_condition` a first
    no-grad pass supplies the self-conditioning logits (temperature-scaled as at inference).

    The denoising loss is a mean per example in which the padding after the answer's `<eos>`
    counts `pad_weight` as much as an answer token: a short answer (a 19-character pets sentence)
    would otherwise get a fifth of the weight of the padding around it. (`generate` replaces
    everything after `<eos>` by padding, so the padding only has to be recognised, not exact.)
    """
    from transformers import DynamicCache

    config = model.config
    vocab_size = config.text_config.vocab_size
    encoder = model.model.encoder
    cache = DynamicCache(config=config.get_text_config(decoder=True))
    encoder_out = encoder(
        input_ids=prompt_ids, attention_mask=prompt_mask, **{cache_kwarg(encoder): cache}
    )
    ar_logits = softcapped_logits(model, encoder_out.last_hidden_state[:, :-1])
    ar_targets = prompt_ids[:, 1:].masked_fill(prompt_mask[:, 1:] == 0, -100)
    ar_loss = F.cross_entropy(ar_logits.reshape(-1, vocab_size), ar_targets.reshape(-1))

    noisy = corrupt(canvas, vocab_size, generator)
    decoder_mask = F.pad(prompt_mask, (0, canvas.shape[1]), value=1).bool()
    cache_name = cache_kwarg(model)
    self_conditioning_logits = None
    if self_condition:
        with torch.no_grad():
            first = model(
                decoder_input_ids=noisy, decoder_attention_mask=decoder_mask, **{cache_name: cache}
            ).logits
            temperature = 0.4 + 0.4 * torch.rand(canvas.shape[0], 1, 1, generator=generator)
            self_conditioning_logits = first / temperature
    recorder.clear()
    recorder.active = True
    logits = model(
        decoder_input_ids=noisy,
        decoder_attention_mask=decoder_mask,
        self_conditioning_logits=self_conditioning_logits,
        **{cache_name: cache},
    ).logits
    recorder.active = False
    token_loss = F.cross_entropy(
        logits.reshape(-1, vocab_size), canvas.reshape(-1), reduction="none"
    ).view(canvas.shape)
    weights = torch.where(canvas == config.pad_token_id, pad_weight, 1.0)
    denoise_loss = ((token_loss * weights).sum(-1) / weights.sum(-1)).mean()
    balance = [switch_balance_loss(p, i) for records in recorder.records for p, i in records]
    balance_loss = torch.stack(balance).mean()
    recorder.clear()
    return {"denoise": denoise_loss, "ar": ar_loss, "balance": balance_loss}
