// @ts-check
// The entropy-bound sampler, explained (mirrors dgviz.trace.Trace.sampler_explainer).
// It sorts positions by entropy and accepts the k lowest with
// sum(entropy_1..k) - max(entropy_1..k) <= bound.

/**
 * @typedef {object} Explained
 * @property {number[]} order positions, lowest entropy first
 * @property {Float64Array} sorted entropies in that order
 * @property {Float64Array} cumulative running sum of `sorted`
 * @property {Float64Array} criterion running sum minus the largest so far (Σ − max)
 * @property {Uint8Array} acceptedSorted whether each of `order` was accepted
 * @property {number} nAccepted
 * @property {number} withinBound how many lowest-entropy positions satisfy criterion <= bound
 * @property {number} bound
 */

/**
 * @param {ArrayLike<number>} entropy one step's entropies, [L]
 * @param {ArrayLike<number>} accepted one step's accepted flags, [L]
 * @param {number} bound the sampler's entropy bound (NaN when unknown)
 * @returns {Explained}
 */
export function explainStep(entropy, accepted, bound) {
  const n = entropy.length;
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => entropy[a] - entropy[b] || a - b); // stable, as numpy's kind="stable"
  const sorted = new Float64Array(n), cumulative = new Float64Array(n);
  const criterion = new Float64Array(n), acceptedSorted = new Uint8Array(n);
  let sum = 0, nAccepted = 0, withinBound = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.fround(entropy[order[i]]);
    sum += e;
    sorted[i] = e;
    cumulative[i] = sum;
    criterion[i] = sum - e;
    acceptedSorted[i] = accepted[order[i]] ? 1 : 0;
    nAccepted += acceptedSorted[i];
    if (criterion[i] <= bound) withinBound = i + 1;
  }
  return { order, sorted, cumulative, criterion, acceptedSorted, nAccepted, withinBound, bound };
}

/**
 * How many tokens each expert got at one step and layer, counting every top-k slot (or only
 * the top-1 with `topOnly`).
 * @param {ArrayLike<number>} ids expert ids of one step, laid out [N, L, k]
 * @param {number} layer @param {number} numPositions @param {number} k @param {number} numExperts
 * @param {boolean} [topOnly]
 */
export function expertLoad(ids, layer, numPositions, k, numExperts, topOnly = false) {
  const counts = new Array(numExperts).fill(0);
  const base = layer * numPositions * k;
  for (let p = 0; p < numPositions; p++) {
    for (let j = 0; j < (topOnly ? 1 : k); j++) {
      const e = ids[base + p * k + j];
      if (e >= 0 && e < numExperts) counts[e] += 1;
    }
  }
  return counts;
}

/**
 * @typedef {object} ExplainedMasked
 * @property {number[]} order positions masked before the step, most confident first
 * @property {Float64Array} sorted their confidence, in that order
 * @property {Uint8Array} committedSorted whether each was committed (unmasked) this step
 * @property {number} nCommitted @property {number} nEdited committed tokens replaced this step
 * @property {number} stillMasked positions still masked after the step
 */

/**
 * Masked diffusion (LLaDA2): what one step did. A position masked before the step is committed
 * when the kept canvas (the draft) no longer holds the mask; a committed one is edited when its
 * token changed.
 * @param {ArrayLike<number>} confidence @param {ArrayLike<number>} canvasIn before the step
 * @param {ArrayLike<number>} draft after the step @param {number} mask the mask token id
 * @returns {ExplainedMasked}
 */
export function explainMaskedStep(confidence, canvasIn, draft, mask) {
  /** @type {number[]} */
  const order = [];
  let nEdited = 0, stillMasked = 0;
  for (let p = 0; p < canvasIn.length; p++) {
    if (canvasIn[p] === mask) order.push(p);
    else if (draft[p] !== canvasIn[p]) nEdited++;
    if (draft[p] === mask) stillMasked++;
  }
  order.sort((a, b) => confidence[b] - confidence[a] || a - b);
  const sorted = new Float64Array(order.length), committedSorted = new Uint8Array(order.length);
  let nCommitted = 0;
  order.forEach((p, i) => {
    sorted[i] = confidence[p];
    committedSorted[i] = draft[p] !== mask ? 1 : 0;
    nCommitted += committedSorted[i];
  });
  return { order, sorted, committedSorted, nCommitted, nEdited, stillMasked };
}
