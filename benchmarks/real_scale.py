"""The DiffusionGemma-26B-A4B's shape recorded: overhead, memory, trace size, to_html, one run.

Builds a model with the 26B-A4B's text shape from a `DiffusionGemmaTextConfig` (random weights,
bf16 by default, no download; a tiny vision tower, as `dgviz.testing.tiny_config` has), with
``--layers`` layers, and a 262,144-token SentencePiece-style tokenizer built in code (byte
fallback, Gemma's decoder chain; not Gemma's pieces). Then it prints:

- identical output: every recorded run's tokens against a plain ``model.generate`` with the
  same seed (input ids on the model's device), for 1 and 2 canvases;
- the overhead: median over interleaved pairs of record / generate wall time (and min/min;
  on CPU also the ratio of process CPU time, which a second job on the machine disturbs less);
- extra peak memory of a recorded run over a plain one: CUDA's peak allocated memory on a GPU;
  on CPU the peak resident set size (RSS, sampled every 10 ms) above the RSS before the run;
- trace bytes on disk per canvas, by array, and extrapolated to the real shape (256 positions x
  48 steps x 30 layers) when the run is smaller;
- ``to_html`` time and size;
- the token-text share of a step: time spent decoding token text during one recorded run over
  the run's step time.

    python benchmarks/real_scale.py --device cuda      # the real shape: ~51 GB of bf16 weights
    python benchmarks/real_scale.py                    # CPU: 2 layers, 32 positions, 2 steps
    python benchmarks/real_scale.py --sizes-only --canvas 256 --steps 48   # one recording: sizes
    python benchmarks/real_scale.py --synthetic    # no model: sizes of made-up real-shape traces

``--synthetic`` writes two made-up traces of one real-shape canvas (`synthetic_trace`) and
prints their bytes on disk in format 3 against format 2's (narrow dtypes, nothing compressed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import dgviz

REAL = {"layers": 30, "canvas": 256, "steps": 48}
# the 26B-A4B's text config (issue 13), less the depth, which --layers sets
TEXT = dict(vocab_size=262144, hidden_size=2816, intermediate_size=2112, num_attention_heads=16,
            num_key_value_heads=8, head_dim=256, global_head_dim=512, num_experts=128,
            top_k_experts=8, moe_intermediate_size=704, sliding_window=1024,
            max_position_embeddings=262144, pad_token_id=0, eos_token_id=1, bos_token_id=2)
# random weights make the adaptive stop fire after a step or two: off, so that every canvas has
# --steps steps (the runs had 48). Not with a huge stability_threshold: transformers keeps
# and rolls a [threshold, batch, canvas] history every step (2 GB at 1,000,000 x 256)
NO_STOP = {"stability_threshold": None, "confidence_threshold": None}
ROUTING = ("expert_ids", "expert_weights", "router_entropy")
ENCODER = ("encoder_expert_ids", "encoder_expert_weights", "encoder_router_entropy")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--layers", type=int, help="default: 30 on a GPU, 2 on CPU")
    parser.add_argument("--canvas", type=int, help="positions per canvas (256 GPU, 32 CPU)")
    parser.add_argument("--steps", type=int, help="denoising steps per canvas (48 GPU, 2 CPU)")
    parser.add_argument("--repeats", type=int, help="timed pairs per canvas count (5 GPU, 2 CPU)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for the traces and pages (default: a temp dir)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--sizes-only", action="store_true",
                        help="record one canvas, print its trace sizes, nothing else")
    parser.add_argument("--synthetic", action="store_true",
                        help="no model: the sizes of two made-up real-shape traces")
    args = parser.parse_args()
    if args.synthetic:
        synthetic_sizes(Path(args.out) if args.out else Path(tempfile.mkdtemp()))
        return
    gpu = args.device.startswith("cuda")
    layers = args.layers or (30 if gpu else 2)
    canvas = args.canvas or (256 if gpu else 32)
    steps = args.steps or (48 if gpu else 2)
    repeats = args.repeats if args.repeats is not None else (5 if gpu else 2)
    if not gpu:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print(f"device {_device_name(device)}; torch {torch.__version__}, transformers "
          f"{_version('transformers')}, dgviz {dgviz.__version__}; "
          f"{torch.get_num_threads()} torch thread(s); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    start = time.perf_counter()
    model = build_model(layers, canvas, DTYPES[args.dtype], device)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {layers} layers, canvas {canvas}, {args.dtype}, {params / 1e9:.2f}B "
          f"parameters, built in {time.perf_counter() - start:.0f} s")
    tok = build_tokenizer(TEXT["vocab_size"])
    ids = torch.arange(100, 116, device=device)[None]  # 16 prompt tokens, on the model's device
    results: dict = {"device": _device_name(device), "layers": layers, "canvas": canvas,
                     "steps": steps, "dtype": args.dtype, "repeats": repeats}

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="real_scale_"))
    out.mkdir(parents=True, exist_ok=True)
    if args.sizes_only:
        t0 = time.perf_counter()
        trace = dgviz.record(model, tok, ids, seed=args.seed, max_new_tokens=canvas,
                             max_denoising_steps=steps, **NO_STOP)
        row = {"steps": trace.num_steps, "record_s": time.perf_counter() - t0,
               **_sizes(trace, out / "run1.dgtrace", 1, layers, canvas, steps)}
        print(f"recorded {trace.num_steps} steps in {row['record_s']:.0f} s")
        _print_sizes(row)
        return
    for n in (1, 2):
        gen = {"max_new_tokens": n * canvas, "max_denoising_steps": steps, **NO_STOP}
        pairs = [run_pair(model, tok, ids, gen, args.seed + r, device)
                 for r in range(max(1, repeats + (n == 1)))]
        timed = pairs[1:] if n == 1 and repeats else pairs  # the first 1-canvas pair warms up
        trace = pairs[-1]["trace"]
        same = all(p["same"] for p in pairs)
        row = {"identical": same, "pairs": len(pairs), "steps": trace.num_steps}
        if repeats:
            row.update(_timing(timed, gpu))
        row.update(_sizes(trace, out / f"run{n}.dgtrace", n, layers, canvas, steps))
        t0 = time.perf_counter()
        page = trace.to_html(out / f"run{n}.html")
        row["to_html_s"] = time.perf_counter() - t0
        row["html_bytes"] = page.stat().st_size
        results[f"{n}_canvas"] = row
        _print_row(n, row, gpu)
    results["token_text"] = token_text_share(model, tok, ids, canvas, steps, args.seed)
    tt = results["token_text"]
    print(f"token text: {tt['ms_per_step']:.2f} ms a step ({tt['ids_per_step']:.0f} new ids a "
          f"step, looked up in {tt['calls']} calls) = {100 * tt['share']:.3f}% of this run's "
          f"{tt['step_ms']:.0f} ms steps; the table of every id's text, built once per "
          f"tokenizer: {tt['table_s']:.2f} s")
    print(f"traces and pages in {out}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))


def build_model(layers: int, canvas: int, dtype: torch.dtype, device: torch.device):
    """The 26B-A4B's shape with ``layers`` layers, random weights made on ``device``."""
    from transformers import (
        DiffusionGemmaConfig,
        DiffusionGemmaForBlockDiffusion,
        Gemma4VisionConfig,
    )
    from transformers.models.diffusion_gemma import DiffusionGemmaTextConfig

    text = DiffusionGemmaTextConfig(num_hidden_layers=layers, **TEXT)
    vision = Gemma4VisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                num_attention_heads=1, num_key_value_heads=1, head_dim=8)
    vocab = TEXT["vocab_size"]
    config = DiffusionGemmaConfig(text_config=text, vision_config=vision, canvas_length=canvas,
                                  boi_token_id=vocab - 3, eoi_token_id=vocab - 2,
                                  image_token_id=vocab - 1)
    default = torch.get_default_dtype()
    torch.manual_seed(0)
    try:  # made in place, in the target dtype: no float32 copy, no host copy of a GPU model
        torch.set_default_dtype(dtype)
        with device:
            model = DiffusionGemmaForBlockDiffusion(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def build_tokenizer(vocab: int):
    """A SentencePiece-style tokenizer with ``vocab`` pieces: specials, 256 byte pieces, then
    word pieces (two in three start a word, ``▁w…``), Gemma's decoder chain (▁ to space, byte
    fallback, fuse). Its pieces are made up; its size and decoding path are the real model's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    pieces.update({f"<0x{b:02X}>": 4 + b for b in range(256)})
    pieces.update({(f"▁w{i}" if i % 3 else f"w{i}"): i for i in range(len(pieces), vocab)})
    backend = Tokenizer(models.BPE(vocab=pieces, merges=[], unk_token="<unk>",
                                   byte_fallback=True, fuse_unk=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse()])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                   eos_token="<eos>", bos_token="<bos>", unk_token="<unk>")


def run_pair(model, tok, ids, gen: dict, seed: int, device: torch.device) -> dict:
    """A plain generate, then a recorded run with the same seed: times, peak memory, output."""
    def plain():
        torch.manual_seed(seed)
        return model.generate(ids, **gen)

    ref, plain_t = _measure(plain, device)
    trace, rec_t = _measure(lambda: dgviz.record(model, tok, ids, seed=seed, **gen), device)
    expect = ref.sequences[:, ids.shape[1]:].cpu().numpy()
    same = trace.output_ids.shape == expect.shape and bool((trace.output_ids == expect).all())
    if not same:
        print(f"  seed {seed}: RECORDED OUTPUT DIFFERS from plain generate")
    return {"plain": plain_t, "record": rec_t, "same": same, "trace": trace}


def _measure(fn, device: torch.device):
    """``fn()``, its wall and CPU seconds and its peak memory above what was in use before."""
    gpu = device.type == "cuda"
    if gpu:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        sampler = None
    else:
        sampler = _RssSampler()
        before = sampler.start()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if gpu:
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = torch.cuda.max_memory_allocated(device) if gpu else sampler.stop()
    return result, {"wall": wall, "cpu": cpu, "peak": peak - before}


class _RssSampler:
    """Peak resident set size of this process, read from /proc every 10 ms in a thread."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self):
        while not self.done.wait(0.01):
            self.peak = max(self.peak, self.rss())

    def start(self) -> int:
        self.peak = before = self.rss()
        self.thread.start()
        return before

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return max(self.peak, self.rss())


def _timing(pairs: list[dict], gpu: bool) -> dict:
    plain = [p["plain"] for p in pairs]
    rec = [p["record"] for p in pairs]
    both = list(zip(plain, rec, strict=True))
    return {
        "plain_s": statistics.median(p["wall"] for p in plain),
        "record_s": statistics.median(r["wall"] for r in rec),
        "ratio": statistics.median(r["wall"] / p["wall"] for p, r in both),
        "min_min": min(r["wall"] for r in rec) / min(p["wall"] for p in plain),
        "cpu_ratio": statistics.median(r["cpu"] / p["cpu"] for p, r in both),
        "plain_peak": statistics.median(p["peak"] for p in plain),
        "record_peak": statistics.median(r["peak"] for r in rec),
        "extra_peak": statistics.median(r["peak"] - p["peak"] for p, r in both),
        "memory": "CUDA max_memory_allocated" if gpu else "RSS sampled every 10 ms",
    }


def _sizes(trace, path: Path, canvases: int, layers: int, canvas: int, steps: int) -> dict:
    """Bytes on disk per canvas, by array, and scaled to the real shape."""
    t0 = time.perf_counter()
    trace.save(path)
    save_s = time.perf_counter() - t0
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    by_array: dict[str, int] = {}
    for name, info in header.items():
        if name != "__metadata__":
            field = name.split(".")[0]  # "<name>.q8" ranges count with their array, the
            # token text's two arrays ("token_text.ids", ".json") as "token_text"
            by_array[field] = by_array.get(field, 0) + info["data_offsets"][1] - \
                info["data_offsets"][0]
    by_array["(meta, header)"] = len(raw) - sum(by_array.values())
    per_canvas = {k: v / canvases for k, v in by_array.items()}
    # each array by what it grows with: positions (L), steps (S), layers (N); the encoder
    # reads each finished canvas (L) through every layer; token text grows at most with L x S
    # (distinct ids saturate with the vocabulary: an upper bound)
    grow_l, grow_s = REAL["canvas"] / canvas, REAL["steps"] / steps
    grow_n = REAL["layers"] / layers
    real = {}
    for name, value in per_canvas.items():
        if name in ROUTING:
            factor = grow_l * grow_s * grow_n
        elif name in ENCODER:
            factor = grow_l * grow_n
        elif name in ("step_canvas", "step_remaining", "temperature", "step_seconds", "active",
                      "stop"):
            factor = grow_s
        elif name in ("prompt_ids", "tokens_per_forward", "(meta, header)"):
            factor = 1.0
        elif name == "output_ids":
            factor = grow_l
        else:
            factor = grow_l * grow_s
        real[name] = value * factor
    encodings = json.loads(header["__metadata__"].get("encodings", "{}"))
    small = not all(isinstance(encodings.get(n), dict) and "zlib" in encodings[n]["codecs"]
                    for n in ROUTING if n in encodings)
    return {"file_bytes": len(raw), "bytes_per_canvas": len(raw) / canvases,
            "small_arrays": small,
            "by_array": per_canvas, "save_s": save_s,
            "real_shape_bytes_per_canvas": sum(real.values()), "real_by_array": real,
            "extrapolated": (layers, canvas, steps) != tuple(REAL.values())}


def token_text_share(model, tok, ids, canvas: int, steps: int, seed: int) -> dict:
    """One more recorded canvas, timing its token-text work: every lookup of the ids the run had
    not seen (once per batch of steps copied to the host, and once for the prompt and output),
    summed and divided by the run's steps. The table of every id's text, built once per
    tokenizer on its first recording, is timed on its own first."""
    from dgviz.recording.collector import _TEXT_TABLES, Collector, _text_table

    _TEXT_TABLES.pop(tok, None)
    t0 = time.perf_counter()
    _text_table(tok, model.config.get_text_config(decoder=True).vocab_size)
    table_s = time.perf_counter() - t0
    calls: list[tuple[float, int]] = []
    original = Collector._decode_new

    def timed(self, *arrays):
        t0 = time.perf_counter()
        text = original(self, *arrays)
        calls.append((time.perf_counter() - t0, len(text)))
        return text

    Collector._decode_new = timed
    try:
        trace = dgviz.record(model, tok, ids, seed=seed, max_new_tokens=canvas,
                             max_denoising_steps=steps, **NO_STOP)
    finally:
        Collector._decode_new = original
    decode_s = sum(t for t, _ in calls)
    step_s = float(np.mean(trace.step_seconds))
    return {"ms_per_step": 1e3 * decode_s / trace.num_steps, "table_s": table_s,
            "ids_per_step": sum(n for _, n in calls) / trace.num_steps, "calls": len(calls),
            "step_ms": 1e3 * step_s, "share": decode_s / trace.num_steps / step_s}


def _print_row(n: int, row: dict, gpu: bool) -> None:
    print(f"\n{n} canvas(es), {row['steps']} steps, output identical to plain generate in "
          f"{row['pairs']} of {row['pairs']} pairs: {row['identical']}")
    if "ratio" in row:
        print(f"  generate {row['plain_s']:.2f} s, record {row['record_s']:.2f} s: ratio "
              f"{row['ratio']:.3f} (median of pairs), min/min {row['min_min']:.3f}"
              + ("" if gpu else f", CPU time {row['cpu_ratio']:.3f}"))
        print(f"  peak memory above the start ({row['memory']}): generate "
              f"{row['plain_peak'] / 2**20:.0f} MiB, record {row['record_peak'] / 2**20:.0f} "
              f"MiB, extra {row['extra_peak'] / 2**20:+.0f} MiB")
    print(f"  to_html {row['to_html_s']:.2f} s, {row['html_bytes'] / 1e6:.2f} MB")
    _print_sizes(row)


def _print_sizes(row: dict) -> None:
    print(f"  trace: {row['bytes_per_canvas'] / 1e6:.3f} MB per canvas on disk (saved in "
          f"{row['save_s']:.2f} s)")
    what = "extrapolated to" if row["extrapolated"] else "at"
    print(f"  {what} the real shape (256 positions x 48 steps x 30 layers): "
          f"{row['real_shape_bytes_per_canvas'] / 1e6:.2f} MB per canvas"
          + (" (arrays under 4 kB are stored uncompressed: from a run this small, an upper "
             "bound)" if row["extrapolated"] and row["small_arrays"] else ""))
    for name, value in sorted(row["by_array"].items(), key=lambda kv: -kv[1]):
        print(f"    {name:28s} {value / 1e3:10.1f} kB here {row['real_by_array'][name] / 1e3:10.1f}"
              " kB real shape")


def synthetic_trace(kind: str, seed: int = 0, canvas: int = 256, steps: int = 48,
                    layers: int = 30, experts: int = 128, top: int = 8, k: int = 5,
                    vocab: int = 262144):
    """One made-up canvas at the real shape, for trace sizes. ``kind``:

    - ``"lock-in"``: each position locks in at a step drawn uniformly; until then its token,
      draw, draft and top-k are fresh random ids every step (the sampler re-noises it) and its
      routing is drawn afresh in every layer; once locked its tokens stay and each layer keeps
      its experts with probability 0.9 a step (what the context changes);
    - ``"random"``: no position ever locks: every id and all routing random at every step, the
      least compressible trace of this shape.

    Probabilities are random but valid (top-k sorted, summing to at most 1); expert weights are
    eight sorted shares of 1; router entropies uniform in [2.5, ln 128].
    """
    from dgviz.trace import Trace

    rng = np.random.default_rng(seed)
    s_, l_ = steps, canvas
    lock = rng.integers(0, s_, l_) if kind == "lock-in" else np.full(l_, s_)
    step = np.arange(s_)[:, None]
    final = rng.integers(0, vocab, l_)
    fresh = lambda *shape: rng.integers(0, vocab, shape)  # noqa: E731
    canvas_in = np.where(step > lock, final, fresh(s_, l_))
    sampled = np.where(step >= lock, final, fresh(s_, l_))
    alternatives = rng.integers(0, vocab, (l_, k))
    alternatives[:, 0] = final
    topk_ids = np.where((step >= lock)[..., None], alternatives, fresh(s_, l_, k))
    probs = np.sort(rng.random((s_, l_, k + 1)), axis=-1)[..., ::-1]
    probs = (probs / probs.sum(-1, keepdims=True))[..., :k]
    ids = np.zeros((s_, layers, l_, top), np.int16)
    weights = np.zeros((s_, layers, l_, top), np.float16)
    entropy = np.zeros((s_, layers, l_), np.float16)
    for s in range(s_):
        order = np.argsort(rng.random((layers, l_, experts)), axis=-1)[..., :top]
        w = np.sort(rng.random((layers, l_, top)), axis=-1)[..., ::-1]
        h = rng.uniform(2.5, np.log(experts), (layers, l_))
        if s:
            keep = (s > lock)[None, :] & (rng.random((layers, l_)) < 0.9)
            order = np.where(keep[..., None], ids[s - 1], order)
            w = np.where(keep[..., None], weights[s - 1], w / w.sum(-1, keepdims=True))
            h = np.where(keep, entropy[s - 1], h)
        else:
            w = w / w.sum(-1, keepdims=True)
        ids[s], weights[s], entropy[s] = order, w, h
    prompt = rng.integers(0, vocab, (1, 16))
    enc = (rng.integers(0, experts, (1, 16, layers, top)),
           rng.random((1, 16, layers, top)), rng.uniform(2.5, 4.8, (1, 16, layers)))
    arrays = {
        "canvas_in": canvas_in[None], "sampled": sampled[None], "draft": sampled[None],
        "accepted": (step == lock)[None], "confidence": probs[None, ..., 0],
        "entropy": rng.uniform(0, 12, (1, s_, l_)), "topk_ids": topk_ids[None],
        "topk_probs": probs[None], "active": np.ones((1, s_), bool),
        "stop": np.zeros((1, s_), bool), "step_canvas": np.zeros(s_, np.int32),
        "step_remaining": np.arange(s_, 0, -1), "temperature": np.linspace(0.8, 0.4, s_),
        "step_seconds": np.full(s_, 0.09), "prompt_ids": prompt, "output_ids": final[None],
        "tokens_per_forward": np.array([l_ / s_]), "expert_ids": ids[None],
        "expert_weights": weights[None], "router_entropy": entropy[None],
        "encoder_expert_ids": enc[0], "encoder_expert_weights": enc[1],
        "encoder_router_entropy": enc[2],
    }
    seen = np.unique(np.concatenate([a.ravel() for name, a in arrays.items()
                                     if name in ("canvas_in", "sampled", "topk_ids",
                                                 "prompt_ids", "output_ids")]))
    meta = {"complete": True, "text": [""], "prompt_text": [""], "num_experts": experts,
            "top_k_experts": top, "settings": {"top_k": k, "max_denoising_steps": s_},
            "model": {"vocab_size": vocab, "canvas_length": l_, "num_layers": layers}}
    return Trace(**arrays, token_text={int(i): f" w{i}" for i in seen}, meta=meta)


def format2_bytes(trace) -> int:
    """What format 2 wrote for ``trace``: its arrays in the narrowest integer dtypes, nothing
    compressed, the token text zlib-compressed in base64 (the header's few kB left out)."""
    import base64
    import zlib
    from dataclasses import fields

    from dgviz.tracefile import _disk_dtype

    total = 0
    for f in fields(trace):
        value = getattr(trace, f.name)
        if isinstance(value, np.ndarray):
            total += value.size * _disk_dtype(f.name, value).itemsize
    table = json.dumps(trace.token_text, ensure_ascii=False).encode()
    return total + len(base64.b64encode(zlib.compress(table, 6))) + len(json.dumps(trace.meta))


def synthetic_sizes(out: Path) -> None:
    from dgviz.tracefile import QUANTISATION_ERROR

    out.mkdir(parents=True, exist_ok=True)
    print("one made-up canvas at the real shape: 256 positions x 48 steps, top-5 alternatives, "
          "30 layers x top-8 of 128 experts, a 262,144-token vocabulary")
    for kind in ("lock-in", "random"):
        trace = synthetic_trace(kind)
        row = _sizes(trace, out / f"{kind}.dgtrace", 1, 30, 256, 48)
        t0 = time.perf_counter()
        back = dgviz.load_trace(out / f"{kind}.dgtrace")
        load_s = time.perf_counter() - t0
        err = {name: float(np.abs(getattr(back, name).astype(np.float64)
                                  - getattr(trace, name).astype(np.float64)).max())
               for name in ("expert_weights", "router_entropy")}
        print(f"\n{kind}: format 2 {format2_bytes(trace) / 1e6:.2f} MB, format 3 "
              f"{row['bytes_per_canvas'] / 1e6:.2f} MB (saved in {row['save_s']:.2f} s, loaded "
              f"in {load_s:.2f} s); largest error read back: expert weights "
              f"{err['expert_weights']:.5f}, router entropy {err['router_entropy']:.5f} (bound "
              f"{QUANTISATION_ERROR:.5f} x the layer's range, plus float16 rounding)")
        for name, value in sorted(row["by_array"].items(), key=lambda kv: -kv[1])[:8]:
            print(f"    {name:28s} {value / 1e3:10.1f} kB")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()})"


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
