"""Tiny, untrained models built in code: for tests, benchmarks and docs.

- `tiny_model`: a DiffusionGemma with the real architecture (transformers' own classes: encoder
  + decoder, MoE routers, the real generate loop);
- `tiny_llada2_model` / `tiny_llada2_pipeline`: a stand-in for inclusionAI's LLaDA 2.x MoE for
  diffusers' ``LLaDA2Pipeline``. LLaDA2's modeling code is not in transformers or diffusers (the
  checkpoints ship it as ``trust_remote_code``, which needs a download), so this one is written
  here: a small bidirectional MoE transformer with the interface the pipeline calls
  (``model(ids, attention_mask=, position_ids=).logits``) and a router of the same kind as
  LLaDA2's (``LLaDA2MoeGate``: sigmoid scores, group-limited top-k, returning
  ``(topk_idx, topk_weight, logits)``). It is not LLaDA2's architecture layer for layer.

All run in milliseconds on a CPU and need nothing from a model hub.
"""

from __future__ import annotations

import functools

import torch

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]


def tiny_tokenizer(vocab_size: int = 64, *, mask_token: str | None = None):
    """A word-level tokenizer whose words are ``w4 … w{vocab_size-4}`` plus a few real words.

    ``mask_token`` (masked-diffusion models, e.g. ``"<|mask|>"``) takes the last id.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["the", "cat", "sat", "on", "mat", "\n", "  ", "<b>", "1", "2", "3", "+", "="]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in words:
        if len(vocab) < vocab_size - 3:  # the last 3 ids are the image tokens
            vocab.setdefault(word, len(vocab))
    while len(vocab) < vocab_size - (mask_token is not None):
        vocab[f"w{len(vocab)}"] = len(vocab)
    extra = {}
    if mask_token is not None:
        vocab[mask_token] = len(vocab)
        extra["mask_token"] = mask_token
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
        unk_token="<unk>", **extra,
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


# ============================================================================ tiny LLaDA2
LLADA2_MASK_TOKEN = "<|mask|>"  # LLaDA2's own mask token


class LLaDA2MoeGate(torch.nn.Module):
    """LLaDA2's kind of MoE router: sigmoid scores plus a load-balancing bias choose the top-k
    experts within the best ``topk_group`` of ``n_group`` expert groups; the chosen experts'
    sigmoid scores, normalised and scaled, are their weights. ``forward(hidden [..., H])``
    returns ``(topk_idx [T, k], topk_weight [T, k], logits [T, E])`` over the flattened tokens,
    as LLaDA2's ``LLaDA2MoeGate`` does."""

    def __init__(self, config):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.num_experts = config.num_experts
        self.n_group = config.n_group
        self.topk_group = config.topk_group
        self.routed_scaling_factor = config.routed_scaling_factor
        self.weight = torch.nn.Parameter(torch.randn(config.num_experts, config.hidden_size) * 0.5)
        self.register_buffer("expert_bias", torch.zeros(config.num_experts))

    def forward(self, hidden_states: torch.Tensor):
        flat = hidden_states.reshape(-1, hidden_states.shape[-1]).float()
        logits = flat @ self.weight.float().T
        scores = logits.sigmoid()
        biased = (scores + self.expert_bias).view(flat.shape[0], self.n_group, -1)
        group_score = biased.topk(min(2, biased.shape[-1]), dim=-1).values.sum(-1)
        groups = group_score.topk(self.topk_group, dim=-1).indices
        keep = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, groups, True)
        allowed = keep[..., None].expand_as(biased).reshape(flat.shape[0], -1)
        topk_idx = biased.reshape(flat.shape[0], -1).masked_fill(~allowed, float("-inf")).topk(
            self.top_k, dim=-1).indices
        weight = scores.gather(1, topk_idx)
        if self.top_k > 1:
            weight = weight / (weight.sum(-1, keepdim=True) + 1e-20)
        return topk_idx, weight * self.routed_scaling_factor, logits


class _TinyMLP(torch.nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.gate_proj = torch.nn.Linear(hidden, inner, bias=False)
        self.up_proj = torch.nn.Linear(hidden, inner, bias=False)
        self.down_proj = torch.nn.Linear(inner, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class _TinySparseMoe(torch.nn.Module):
    """Routed experts (``gate`` chooses) plus one shared expert, as in LLaDA2's MoE layers."""

    def __init__(self, config):
        super().__init__()
        self.gate = LLaDA2MoeGate(config)
        self.experts = torch.nn.ModuleList(
            _TinyMLP(config.hidden_size, config.moe_intermediate_size)
            for _ in range(config.num_experts))
        self.shared_experts = _TinyMLP(config.hidden_size, config.moe_intermediate_size)

    def forward(self, x):
        idx, weight, _ = self.gate(x)
        flat = x.reshape(-1, x.shape[-1])
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel():
                out.index_add_(0, tok, expert(flat[tok]) * weight[tok, slot, None].to(flat.dtype))
        return out.view_as(x) + self.shared_experts(x)


class _TinyLayer(torch.nn.Module):
    """Pre-norm block: bidirectional self-attention over the whole sequence (keys outside the
    2D attention mask left out), then a dense MLP or the MoE."""

    def __init__(self, config, moe: bool):
        super().__init__()
        h = config.hidden_size
        self.heads = config.num_attention_heads
        self.input_layernorm = torch.nn.RMSNorm(h, eps=1e-6)
        self.qkv = torch.nn.Linear(h, 3 * h, bias=False)
        self.dense = torch.nn.Linear(h, h, bias=False)
        self.post_attention_layernorm = torch.nn.RMSNorm(h, eps=1e-6)
        self.mlp = _TinySparseMoe(config) if moe else _TinyMLP(h, config.intermediate_size)

    def forward(self, x, keys: torch.Tensor | None):
        b, t, h = x.shape
        q, k, v = self.qkv(self.input_layernorm(x)).view(b, t, 3, self.heads, -1).unbind(2)
        att = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=keys)
        x = x + self.dense(att.transpose(1, 2).reshape(b, t, h))
        return x + self.mlp(self.post_attention_layernorm(x))


@functools.cache
def _llada2_classes():
    """The config and model classes (built on first use: transformers loads only then)."""
    from transformers import PreTrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import MoeCausalLMOutputWithPast

    class LLaDA2MoeConfig(PreTrainedConfig):
        """Sizes of the tiny LLaDA2 stand-in (LLaDA2's own config field names)."""

        model_type = "llada2_moe"

        def __init__(self, vocab_size=64, hidden_size=32, intermediate_size=64,
                     num_hidden_layers=2, num_attention_heads=2, num_experts=8,
                     num_experts_per_tok=2, n_group=2, topk_group=1, routed_scaling_factor=1.0,
                     moe_intermediate_size=32, first_k_dense_replace=0,
                     max_position_embeddings=1024, **kwargs):
            self.vocab_size = vocab_size
            self.hidden_size = hidden_size
            self.intermediate_size = intermediate_size
            self.num_hidden_layers = num_hidden_layers
            self.num_attention_heads = num_attention_heads
            self.num_experts = num_experts
            self.num_experts_per_tok = num_experts_per_tok
            self.n_group = n_group
            self.topk_group = topk_group
            self.routed_scaling_factor = routed_scaling_factor
            self.moe_intermediate_size = moe_intermediate_size
            self.first_k_dense_replace = first_k_dense_replace
            self.max_position_embeddings = max_position_embeddings
            super().__init__(**kwargs)

    class LLaDA2MoeModelLM(PreTrainedModel):
        """``forward(input_ids, attention_mask=None, position_ids=None)`` -> ``.logits``
        (float32 ``[B, T, V]``), the call diffusers' ``LLaDA2Pipeline`` makes."""

        config_class = LLaDA2MoeConfig
        base_model_prefix = "model"

        def __init__(self, config):
            super().__init__(config)
            h = config.hidden_size
            self.word_embeddings = torch.nn.Embedding(config.vocab_size, h)
            self.position_embeddings = torch.nn.Embedding(config.max_position_embeddings, h)
            self.layers = torch.nn.ModuleList(
                _TinyLayer(config, moe=i >= config.first_k_dense_replace)
                for i in range(config.num_hidden_layers))
            self.norm = torch.nn.RMSNorm(h, eps=1e-6)
            self.lm_head = torch.nn.Linear(h, config.vocab_size, bias=False)
            self.post_init()

        def _init_weights(self, module):  # keep torch's defaults (and the gate's own init)
            pass

        def get_input_embeddings(self):
            return self.word_embeddings

        def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
            b, t = input_ids.shape
            if position_ids is None:
                position_ids = torch.arange(t, device=input_ids.device)[None].expand(b, -1)
            x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
            keys = None
            if attention_mask is not None:
                keys = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, T]: keys to read
            for layer in self.layers:
                x = layer(x, keys)
            return MoeCausalLMOutputWithPast(logits=self.lm_head(self.norm(x)).float())

    for cls in (LLaDA2MoeConfig, LLaDA2MoeModelLM):
        cls.__qualname__ = cls.__name__
    return LLaDA2MoeConfig, LLaDA2MoeModelLM


def tiny_llada2_config(*, vocab_size: int = 64, num_layers: int = 2, hidden_size: int = 32,
                       num_experts: int = 8, top_k_experts: int = 2, n_group: int = 2,
                       topk_group: int = 1, first_k_dense_replace: int = 0):
    """The config of `tiny_llada2_model` (``LLaDA2MoeConfig`` field names)."""
    config_cls, _ = _llada2_classes()
    return config_cls(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=2, num_experts=num_experts,
        num_experts_per_tok=top_k_experts, n_group=n_group, topk_group=topk_group,
        moe_intermediate_size=hidden_size, first_k_dense_replace=first_k_dense_replace,
        pad_token_id=0, eos_token_id=1, bos_token_id=2, mask_token_id=vocab_size - 1,
    )


def tiny_llada2_model(seed: int = 0, **config_kwargs):
    """``(model, tokenizer)``: a randomly initialised tiny LLaDA2 stand-in (see the module's
    docstring) and its tokenizer, whose mask token ``<|mask|>`` is the last id."""
    _, model_cls = _llada2_classes()
    config = tiny_llada2_config(**config_kwargs)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_cls(config).eval()
    return model, tiny_tokenizer(config.vocab_size, mask_token=LLADA2_MASK_TOKEN)


def tiny_llada2_pipeline(seed: int = 0, scheduler=None, **config_kwargs):
    """diffusers' ``LLaDA2Pipeline`` around `tiny_llada2_model` (``BlockRefinementScheduler``
    with ``block_length=8`` unless ``scheduler`` is given; progress bars off). Needs diffusers."""
    from diffusers import BlockRefinementScheduler, LLaDA2Pipeline

    model, tok = tiny_llada2_model(seed, **config_kwargs)
    pipe = LLaDA2Pipeline(model=model, scheduler=scheduler or BlockRefinementScheduler(
        block_length=8), tokenizer=tok)
    pipe.set_progress_bar_config(disable=True)
    return pipe
