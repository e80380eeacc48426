// The run as the front end sees it: `_run` (small, whole-run arrays and facts) plus one chunk per
// canvas (`_chunks`, `_live`) holding that canvas's steps. Pure functions over decoded arrays.
import { decodeTree } from "./codec.js";
import { canvasBounds } from "./timeline.js";
import { FINAL, RENOISED } from "./colors.js";

/** Decode the `_run` trait value into a Run object (arrays become typed arrays). */
export function readRun(raw) {
  if (!raw || !raw.shape) return null;
  const run = decodeTree(raw);
  const a = run.arrays;
  const stepCanvas = a.step_canvas.data;
  return {
    ...run,
    steps: run.shape.steps,
    length: run.shape.length,
    bounds: canvasBounds(stepCanvas, run.shape.canvases),
    a: Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v.data])),
  };
}

/** Decode one canvas chunk ({canvas, lo, version, <arrays>}). */
export function readChunk(raw, length) {
  const d = decodeTree(raw);
  const out = { canvas: d.canvas, lo: d.lo, version: d.version, n: d.state.shape[0], L: length };
  for (const [k, v] of Object.entries(d)) if (v && v.data) out[k] = v.data;
  out.layers = d.expert_ids ? d.expert_ids.shape[1] : 0;
  out.k = d.expert_ids ? d.expert_ids.shape[3] : 0;
  out.K = d.topk_ids ? d.topk_ids.shape[2] : 0;
  return out;
}

/** Text of a token id (ids the run never showed come back as ⟨id⟩, as Trace.tokens does). */
export function tokenText(run, id) {
  const t = run.token_text[id];
  return t === undefined ? `\u27e8${id}\u27e9` : t;
}

/**
 * The token shown at a position after a step.
 * mode "draft": the argmax draft. mode "canvas" (what the canvas holds): final positions show
 * the draft (it already holds the final token), accepted ones the token the sampler kept, and
 * re-noised ones the random token they got (the next step's input; at a canvas's last step,
 * the sampled token).
 */
export function shownToken(chunk, local, pos, mode) {
  const i = local * chunk.L + pos;
  if (mode === "draft") return chunk.draft[i];
  const state = chunk.state[i];
  if (state === FINAL) return chunk.draft[i];
  if (state !== RENOISED) return chunk.sampled[i];
  return local + 1 < chunk.n ? chunk.canvas_in[i + chunk.L] : chunk.sampled[i];
}

/** One position's values across a canvas's steps (sparklines). */
export function history(chunk, name, pos) {
  const out = new Float32Array(chunk.n);
  const arr = chunk[name];
  for (let s = 0; s < chunk.n; s++) out[s] = arr[s * chunk.L + pos];
  return out;
}

/** Top-1 expert of each layer at a step, or its full top-k list. */
export function expertsAt(chunk, local, pos) {
  const { layers, k, L } = chunk;
  const out = [];
  for (let layer = 0; layer < layers; layer++) {
    const base = ((local * layers + layer) * L + pos) * k;
    const picks = [];
    for (let j = 0; j < k; j++) picks.push({ expert: chunk.expert_ids[base + j], weight: chunk.expert_weights ? chunk.expert_weights[base + j] : NaN });
    const ent = chunk.router_entropy ? chunk.router_entropy[(local * layers + layer) * L + pos] : NaN;
    out.push({ layer, picks, entropy: ent });
  }
  return out;
}

/** The top-1 expert of (step, layer, position), -1 without routing. */
export function topExpert(chunk, local, layer, pos) {
  if (!chunk.expert_ids) return -1;
  return chunk.expert_ids[((local * chunk.layers + layer) * chunk.L + pos) * chunk.k];
}

export function topWeight(chunk, local, layer, pos) {
  if (!chunk.expert_weights) return 1;
  return chunk.expert_weights[((local * chunk.layers + layer) * chunk.L + pos) * chunk.k];
}

/** Bytes as "12.3 kB" / "4.5 MB". */
export function formatBytes(n) {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  return `${(n / 1e6).toFixed(1)} MB`;
}
