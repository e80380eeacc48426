"""The demo model's character-level tokenizer (one token per character, plus chat specials)."""

from __future__ import annotations

PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"
START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"
# DiffusionGemma's config needs image token ids; they live inside the small vocabulary, unused.
BOI, EOI, IMAGE = "<boi>", "<eoi>", "<image>"
SPECIAL_TOKENS = [PAD, EOS, BOS, UNK, START_OF_TURN, END_OF_TURN, BOI, EOI, IMAGE]

CHARACTERS = (
    "\n "
    + "0123456789"
    + "abcdefghijklmnopqrstuvwxyz"
    + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    + ".,!?:;+-=*/()[]{}<>'\"#_|"
)

# Gemma-style turns; the generation prompt leaves the model's turn open for the canvas.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{{ message['content'] }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def build_vocab() -> dict[str, int]:
    tokens = SPECIAL_TOKENS + list(CHARACTERS)
    assert len(set(tokens)) == len(tokens)
    return {token: index for index, token in enumerate(tokens)}


def build_tokenizer():
    """A `PreTrainedTokenizerFast`: WordLevel over single characters, specials matched whole."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab=build_vocab(), unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens=[START_OF_TURN, END_OF_TURN, BOI, EOI, IMAGE],
        padding_side="left",
        model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def chat_prompt_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a one-message user chat with the model's turn opened."""
    out = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
    )
    if isinstance(out, dict) or hasattr(out, "input_ids"):
        out = out["input_ids"]
    return list(out)
