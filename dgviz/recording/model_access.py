"""What the recorder needs to know about a model: its class, device, routers and facts."""

from __future__ import annotations

import contextlib
import hashlib
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import torch


def is_pipeline(obj: Any) -> bool:
    """A diffusers ``DiffusionGemmaPipeline`` (checked by name: diffusers is optional)."""
    return type(obj).__name__ == "DiffusionGemmaPipeline" and hasattr(obj, "scheduler")


def check_model(model: Any) -> None:
    from transformers import DiffusionGemmaForBlockDiffusion

    if not isinstance(model, DiffusionGemmaForBlockDiffusion):
        name = type(model).__name__
        raise TypeError(
            f"dgviz.record needs a DiffusionGemmaForBlockDiffusion (or a diffusers "
            f"DiffusionGemmaPipeline), got {name}. Load the model with "
            "transformers.DiffusionGemmaForBlockDiffusion.from_pretrained(...); "
            "AutoModel/AutoModelForCausalLM give classes without the block-diffusion generate loop."
        )


def vocab_size(model: Any) -> int:
    return int(model.config.get_text_config(decoder=True).vocab_size)


def embedding_device(model: Any) -> torch.device:
    """Where input ids must go: the device of the decoder's token embedding.

    A model offloaded with accelerate (``cpu_offload``, ``disk_offload``, or a ``device_map``
    with offloaded parts) keeps its weights on the ``meta`` device and moves them in for each
    forward pass; there the ids go to the execution device of accelerate's hook, never to
    ``meta``.
    """
    try:
        embedding = model.model.decoder.embed_tokens
    except AttributeError:
        embedding = model.get_input_embeddings()
    device = embedding.weight.device
    if device.type != "meta":
        return device
    for module in (embedding, *model.modules()):
        execution = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
        if execution is not None:
            return torch.device(f"cuda:{execution}" if isinstance(execution, int) else execution)
    raise ValueError(
        "The model's weights are on the meta device and no accelerate hook says where it runs: "
        "load real weights (from_pretrained(...)) or offload it with accelerate "
        "(cpu_offload(model, execution_device=...)) before recording.")


def check_offload(model: Any) -> None:
    """Refuse an accelerate offload under which DiffusionGemma's own ``generate`` misbehaves.

    The decoder multiplies the previous step's probabilities by its token embedding's weight
    (self-conditioning), outside the embedding's forward pass. accelerate loads an offloaded
    module's weight only for that module's forward, so with the embedding offloaded the decoder
    computes with a weight accelerate has not loaded: generate writes different tokens from run
    to run (seen with transformers 5.25 and accelerate 1.16). It is safe when the embedding stays
    on the execution device, or when a hook loads the whole decoder (``preload_module_classes``).
    """
    try:
        weight = model.model.decoder.embed_tokens.weight
    except AttributeError:
        return
    if weight.device.type != "meta":
        return
    for module in (model.model.decoder, model.model, model):
        hook = getattr(module, "_hf_hook", None)
        for h in getattr(hook, "hooks", [hook]):  # a SequentialHook holds several
            if getattr(h, "offload", False) and getattr(h, "place_submodules", False):
                return
    raise ValueError(
        "The decoder's token embedding is offloaded (its weight is on the meta device), but "
        "DiffusionGemma's decoder reads that weight outside the embedding's forward pass "
        "(self-conditioning), so generate itself would compute with a weight accelerate has not "
        "loaded and write different tokens from run to run. Keep the embeddings on the GPU and "
        "offload the layers: from_pretrained(..., device_map=\"auto\", max_memory={0: \"20GiB\", "
        "\"cpu\": \"60GiB\"}, offload_folder=\"offload\") does (check that "
        "model.hf_device_map['model.decoder.embed_tokens'] is 0), or a device_map of your own "
        "that puts model.decoder.embed_tokens, model.encoder.language_model.embed_tokens and "
        "lm_head on the GPU. (accelerate.cpu_offload(model, ..., preload_module_classes="
        "[\"DiffusionGemmaDecoderModel\"]) is correct too, but loads the whole decoder, all its "
        "experts, for every step.)")


def decoder_routers(model: Any) -> list[torch.nn.Module]:
    layers = model.model.decoder.layers
    return [layer.router for layer in layers if hasattr(layer, "router")]


def encoder_routers(model: Any) -> list[torch.nn.Module]:
    enc = model.model.encoder
    lm = getattr(enc, "language_model", enc)
    return [layer.router for layer in lm.layers if hasattr(layer, "router")]


def model_facts(model: Any) -> dict[str, Any]:
    """Facts about the model kept in every trace: sizes, versions and a config digest."""
    import transformers

    from .. import __version__

    text = model.config.get_text_config(decoder=True)
    config_json = model.config.to_json_string(use_diff=False)
    versions = {"dgviz": __version__, "transformers": transformers.__version__,
                "torch": torch.__version__}
    with contextlib.suppress(PackageNotFoundError):  # without importing it (slow)
        versions["diffusers"] = package_version("diffusers")
    return {
        "model": {
            "class": type(model).__name__,
            "name_or_path": getattr(model.config, "_name_or_path", ""),
            "canvas_length": model.config.canvas_length,
            "vocab_size": text.vocab_size,
            "num_layers": text.num_hidden_layers,
            "config_digest": hashlib.sha256(config_json.encode()).hexdigest()[:16],
        },
        "num_experts": getattr(text, "num_experts", None),
        "top_k_experts": getattr(text, "top_k_experts", None),
        "versions": versions,
    }
