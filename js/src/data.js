// @ts-check
// The run as the front end sees it: `_run` (small, whole-run arrays and facts) plus one chunk per
// canvas (`_chunks`, `_live`) holding that canvas's steps. Pure functions over decoded arrays.
import { decodeTree } from "./codec.js";
import { canvasBounds } from "./timeline.js";
import { FINAL, MASKED, RENOISED } from "./colors.js";
/** @import { Chunk, ChunkPayload, NDArray, Run, RunArrayName } from "./types.js" */
/** @import { RunPayload, Typed } from "./types.js" */

/**
 * Decode the `_run` trait value into a Run (arrays become typed arrays); null when empty.
 * @param {RunPayload | Record<string, never> | null | undefined} raw
 * @param {Record<string, string>} [tokens] the token text table
 * @returns {Run | null}
 */
export function readRun(raw, tokens = {}) {
  if (!raw || !("shape" in raw) || !raw.shape) return null;
  const run = /** @type {Omit<RunPayload, "arrays"> & {arrays: Record<RunArrayName, NDArray>}} */ (
    decodeTree(raw));
  const a = /** @type {Record<RunArrayName, Typed>} */ (Object.fromEntries(
    Object.entries(run.arrays).map(([k, v]) => [k, v.data])));
  return {
    shape: run.shape, info: run.info, palette: run.palette, transport: run.transport,
    initial_step: run.initial_step,
    steps: run.shape.steps,
    length: run.shape.length,
    bounds: canvasBounds(a.step_canvas, run.shape.canvases),
    a,
    token_text: tokens,
  };
}

/**
 * Decode one canvas chunk ({canvas, lo, version, <arrays>}).
 * @param {ChunkPayload} raw
 * @param {number} length positions per canvas
 * @returns {Chunk}
 */
export function readChunk(raw, length) {
  /** @type {Record<string, any>} */
  const d = decodeTree(raw);
  /** @type {Record<string, any>} */
  const out = { canvas: d.canvas, lo: d.lo, version: d.version, n: d.state.shape[0], L: length };
  for (const [k, v] of Object.entries(d)) if (v && v.data) out[k] = v.data;
  out.layers = d.expert_ids ? d.expert_ids.shape[1] : 0;
  out.k = d.expert_ids ? d.expert_ids.shape[3] : 0;
  out.K = d.topk_ids ? d.topk_ids.shape[2] : 0;
  return /** @type {Chunk} */ (out);
}

/**
 * Text of a token id (ids the run never showed come back as ⟨id⟩, as Trace.tokens does).
 * @param {Run} run @param {number} id
 */
export function tokenText(run, id) {
  const t = run.token_text[id];
  return t === undefined ? `\u27e8${id}\u27e9` : t;
}

/**
 * The token shown at a position after a step.
 * mode "draft": the argmax draft. mode "canvas" (what the canvas holds): final positions show
 * the draft (it already holds the final token), accepted ones the token the sampler kept, and
 * re-noised ones the random token they got (the next step's input; at a canvas's last step,
 * the sampled token). Masked positions (masked diffusion) show the draft: the mask token.
 * @param {Chunk} chunk @param {number} local step within the canvas @param {number} pos
 * @param {"canvas" | "draft"} mode
 */
export function shownToken(chunk, local, pos, mode) {
  const i = local * chunk.L + pos;
  if (mode === "draft") return chunk.draft[i];
  const state = chunk.state[i];
  if (state === FINAL || state === MASKED) return chunk.draft[i];
  if (state !== RENOISED) return chunk.sampled[i];
  return local + 1 < chunk.n ? chunk.canvas_in[i + chunk.L] : chunk.sampled[i];
}

/**
 * One position's values across a canvas's steps (sparklines).
 * @param {Chunk} chunk @param {"confidence" | "entropy"} name @param {number} pos
 */
export function history(chunk, name, pos) {
  const out = new Float32Array(chunk.n);
  const arr = chunk[name];
  for (let s = 0; s < chunk.n; s++) out[s] = arr[s * chunk.L + pos];
  return out;
}

/**
 * @typedef {{layer: number, picks: {expert: number, weight: number}[], entropy: number}} LayerPicks
 */

/**
 * The top-k experts (and router weights and entropy) of each layer at a step.
 * @param {Chunk} chunk @param {number} local @param {number} pos
 * @returns {LayerPicks[]}
 */
export function expertsAt(chunk, local, pos) {
  const { layers, k, L, expert_ids: ids, expert_weights: weights, router_entropy: ent } = chunk;
  /** @type {LayerPicks[]} */
  const out = [];
  if (!ids) return out;
  for (let layer = 0; layer < layers; layer++) {
    const base = ((local * layers + layer) * L + pos) * k;
    const picks = [];
    for (let j = 0; j < k; j++) {
      picks.push({ expert: ids[base + j], weight: weights ? weights[base + j] : NaN });
    }
    const entropy = ent ? ent[(local * layers + layer) * L + pos] : NaN;
    out.push({ layer, picks, entropy });
  }
  return out;
}

/**
 * The top-1 expert of (step, layer, position), -1 without routing.
 * @param {Chunk} chunk @param {number} local @param {number} layer @param {number} pos
 */
export function topExpert(chunk, local, layer, pos) {
  if (!chunk.expert_ids) return -1;
  return chunk.expert_ids[((local * chunk.layers + layer) * chunk.L + pos) * chunk.k];
}

/**
 * The router weight of that top-1 expert (1 without weights).
 * @param {Chunk} chunk @param {number} local @param {number} layer @param {number} pos
 */
export function topWeight(chunk, local, layer, pos) {
  if (!chunk.expert_weights) return 1;
  return chunk.expert_weights[((local * chunk.layers + layer) * chunk.L + pos) * chunk.k];
}

/** Bytes as "12.3 kB" / "4.5 MB". @param {number} n */
export function formatBytes(n) {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  return `${(n / 1e6).toFixed(1)} MB`;
}
