// @ts-check
// Timeline maths: one global step axis across canvases (Trace.step_canvas), playback.

/** @typedef {{canvas: number, local: number, lo: number, hi: number, count: number}} Location */

/**
 * [[lo, hi), ...] global step range of each canvas, from step_canvas (sorted, 0..C-1).
 * @param {ArrayLike<number>} stepCanvas @param {number} [numCanvases]
 * @returns {[number, number][]}
 */
export function canvasBounds(stepCanvas, numCanvases) {
  const c = numCanvases ?? (stepCanvas.length ? Math.max(...Array.from(stepCanvas)) + 1 : 0);
  /** @type {[number, number][]} */
  const out = Array.from({ length: c }, () => [0, 0]);
  const seen = new Array(c).fill(false);
  for (let s = 0; s < stepCanvas.length; s++) {
    const k = stepCanvas[s];
    if (!seen[k]) { out[k][0] = s; seen[k] = true; }
    out[k][1] = s + 1;
  }
  return out;
}

/** @param {number} v @param {number} lo @param {number} hi */
export function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }

/**
 * Global step -> {canvas, local (step within its canvas), lo, hi, count}.
 * @param {[number, number][]} bounds @param {number} step
 * @returns {Location}
 */
export function locate(bounds, step) {
  for (let c = 0; c < bounds.length; c++) {
    const [lo, hi] = bounds[c];
    if (step >= lo && step < hi) return { canvas: c, local: step - lo, lo, hi, count: hi - lo };
  }
  throw new RangeError(`dgviz: step ${step} is outside the run`);
}

/**
 * Move by `delta` steps on the global axis, clamped to [0, n).
 * @param {number} step @param {number} delta @param {number} n
 */
export function stepBy(step, delta, n) { return n ? clamp(step + delta, 0, n - 1) : 0; }

/**
 * Jump a canvas forward (dir = 1) or back (dir = -1). Back from the middle of a canvas goes to
 * its first step first (like a music player's "previous").
 * @param {[number, number][]} bounds @param {number} step @param {number} dir
 */
export function jumpCanvas(bounds, step, dir) {
  const { canvas, lo } = locate(bounds, step);
  if (dir < 0 && step > lo) return lo;
  const target = clamp(canvas + dir, 0, bounds.length - 1);
  return bounds[target][0];
}

/**
 * Global step -> x fraction (0..1) of its cell's centre on a strip of n cells (the playhead).
 * @param {number} step @param {number} n
 */
export function stepToFraction(step, n) { return n ? (step + 0.5) / n : 0; }

/** Slider / strip x (0..1) -> global step. @param {number} fraction @param {number} n */
export function fractionToStep(fraction, n) {
  return n ? clamp(Math.floor(clamp(fraction, 0, 1) * n), 0, n - 1) : 0;
}

/**
 * Advance playback by dtMs milliseconds at `speed` steps per second. `carry` accumulates
 * fractions of a step between frames. Playback stops at the last step.
 * @param {{step: number, carry: number}} at @param {number} dtMs @param {number} speed
 * @param {number} n
 * @returns {{step: number, carry: number, playing: boolean}}
 */
export function advance({ step, carry }, dtMs, speed, n) {
  const total = carry + (dtMs / 1000) * speed;
  const whole = Math.floor(total);
  const next = Math.min(step + whole, n - 1);
  const playing = next < n - 1;
  return { step: next, carry: playing ? total - whole : 0, playing };
}

// ---------------------------------------------------------------- synchronized replay
// Several runs share one position on a common axis. Two modes:
//  "normalized":      position in [0, 1] = fraction of each run's own steps (step / (steps - 1)).
//  "forward_passes":  position = 0-based index of the decoder forward pass. A step costs the
//                     passes it made (`passes` in the run payload: 1 while the row was active,
//                     more with a diffusers corrector, 0 after the row finished); a run that has
//                     used all its passes shows its last step.

/** @typedef {"normalized" | "forward_passes"} SyncMode */
/** @typedef {{steps: number, before: Int32Array, passes: number}} StepsInfo */

/** @type {SyncMode[]} */
export const SYNC_MODES = ["normalized", "forward_passes"];

/**
 * {steps, before: Int32Array (passes before each step), passes (total)} from each step's passes.
 * @param {ArrayLike<number>} perStep @param {number} [steps]
 * @returns {StepsInfo}
 */
export function stepsInfo(perStep, steps = perStep.length) {
  const before = new Int32Array(steps);
  let total = 0;
  for (let s = 0; s < steps; s++) { before[s] = total; total += Math.max(0, perStep[s] || 0); }
  return { steps, before, passes: total };
}

/**
 * A run's step at a shared position (clamped: before the start -> 0, past its end -> last).
 * @param {number} position @param {SyncMode} mode @param {StepsInfo} info
 */
export function stepAt(position, mode, info) {
  const n = info.steps;
  if (!n) return 0;
  if (!Number.isFinite(position)) return 0;
  if (mode === "forward_passes") {
    // the last step whose pass index is <= position (binary search: `before` is non-decreasing)
    let lo = 0, hi = n - 1;
    if (position < info.before[0]) return 0;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (info.before[mid] <= position) lo = mid; else hi = mid - 1;
    }
    // a finished row's trailing inactive steps share one pass index: show the last step
    return lo;
  }
  return n > 1 ? clamp(Math.round(clamp(position, 0, 1) * (n - 1)), 0, n - 1) : 0;
}

/**
 * A run's step -> the shared position (inverse of stepAt on the run's own steps).
 * @param {number} step @param {SyncMode} mode @param {StepsInfo} info
 */
export function positionOf(step, mode, info) {
  const n = info.steps;
  if (!n) return 0;
  const s = clamp(step, 0, n - 1);
  if (mode === "forward_passes") return info.before[s];
  return n > 1 ? s / (n - 1) : 0;
}

/**
 * The shared axis of a group as slider stops: value `v` in [0, max] is position `v / scale`.
 * @param {SyncMode} mode @param {StepsInfo[]} infos
 * @returns {{max: number, scale: number}}
 */
export function syncExtent(mode, infos) {
  if (mode === "forward_passes") {
    const last = Math.max(0, ...infos.map((i) => (i.steps ? i.before[i.steps - 1] : 0)));
    return { max: last, scale: 1 };
  }
  // normalized: as many slider stops as the longest run has steps (each step reachable)
  const longest = Math.max(1, ...infos.map((i) => i.steps));
  return { max: Math.max(1, longest - 1), scale: Math.max(1, longest - 1) };
}
