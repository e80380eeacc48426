// @ts-check
// "Sampler at this step": the entropy-bound sampler's choice drawn as sorted entropy bars, the
// accepted ones marked, against the running Σ − max and the bound. Fixed one-line rows and a
// fixed-height chart: its height never changes from step to step.
import { fmt, h, setAttr, setText, sizeCanvas } from "./dom.js";
import { MASKED, NEW } from "./colors.js";
import { explainMaskedStep, explainStep } from "./explain.js";
/** @import { Chunk, Run } from "./types.js" */
/** @import { Location } from "./timeline.js" */

const HEIGHT = 120;

/** @param {number | null | undefined} v */
const finite = (v) => (typeof v === "number" && Number.isFinite(v) ? v : NaN);
/** @param {unknown} v */
const orDash = (v) => (v === null || v === undefined ? "\u2013" : String(v));

export class Explainer {
  /** @param {(pos: number) => void} onPick a bar was clicked: pin that position */
  constructor(onPick) {
    /** @type {number[]} positions in bar order */
    this.order = [];
    this.canvas = h("canvas",
      { class: "dgv-exchart", title: "Click a bar to inspect that position" });
    this.canvas.addEventListener("click", (e) => {
      const box = this.canvas.getBoundingClientRect(); // a click: one read, before any write
      const j = Math.floor(((e.clientX - box.left) / box.width) * this.order.length);
      if (j >= 0 && j < this.order.length) onPick(this.order[j]);
    });
    // two-line boxes: they wrap in a narrow panel, but never grow (the rest is in their title)
    this.counts = h("div", { class: "dgv-lines2 dgv-kv" });
    this.stop = h("div", { class: "dgv-lines2 dgv-kv" });
    this.legend = h("div", { class: "dgv-legend-small" });
    this.el = h("div", { class: "dgv-explainer" },
      h("div", { class: "dgv-line dgv-sub" }, "Sampler at this step"), this.counts, this.canvas,
      this.legend, this.stop);
  }

  /**
   * @param {Run} run @param {Chunk} chunk @param {Location} loc @param {number} step global step
   * @param {number | null} pinned @param {number} width chart width
   */
  render(run, chunk, loc, step, pinned, width) {
    const mask = run.info.mask_token_id;
    if (mask !== null && mask !== undefined) {
      this.renderMasked(run, chunk, loc, step, pinned, width, mask);
      return;
    }
    setText(this.legend, "bars: entropy of each position, lowest first; orange band: " +
      "accepted \u00b7 line: \u03a3 entropy \u2212 max \u00b7 dashed: bound");
    const L = chunk.L, local = loc.local;
    const s = run.info.settings || {};
    const bound = boundAt(run, step);
    const ent = chunk.entropy.subarray(local * L, (local + 1) * L);
    const acc = chunk.accepted ? chunk.accepted.subarray(local * L, (local + 1) * L)
      : chunk.state.subarray(local * L, (local + 1) * L).map((v) => (v === 1 || v === 2 ? 1 : 0));
    const ex = explainStep(ent, acc, bound);
    this.order = ex.order;
    /** @param {HTMLElement} el @param {string} text */
    const put = (el, text) => { setText(el, text); setAttr(el, "title", text); };
    const rule = Number.isFinite(bound)
      ? `${ex.withinBound} lowest-entropy positions satisfy \u03a3H \u2212 max H \u2264 ` +
        `bound ${bound}`
      : "no entropy bound recorded";
    put(this.counts, `${s.sampler || "sampler"}: accepted ${ex.nAccepted} of ${L} \u00b7 ${rule} ` +
      `\u00b7 temperature ${fmt(run.a.temperature[step], 3)}`);
    const fired = run.a.stop[step] ? "fired after this step (canvas done)" : "not fired";
    put(this.stop, `Stop criterion: ${fired}` +
      `${run.a.active[step] ? "" : " \u00b7 row already finished"} \u00b7 ` +
      "steps left in the budget: " +
      `${run.a.step_remaining[step]} of ${orDash(s.max_denoising_steps)}, this one included ` +
      "\u00b7 " +
      `stability threshold ${orDash(s.stability_threshold)} \u00b7 ` +
      `confidence threshold ${orDash(s.confidence_threshold)}`);

    const w = width, hgt = HEIGHT;
    const ctx = sizeCanvas(this.canvas, w, hgt);
    let max = 1e-9;
    for (let j = 0; j < L; j++) max = Math.max(max, ex.sorted[j]);
    const bw = w / L;
    // a 5 px band under the bars marks accepted positions (near-zero bars vanish)
    const base = hgt - 7;
    /** @param {number} v */
    const yE = (v) => base - (v / max) * (base - 14);
    // One path per colour (setting fillStyle per bar is slow). Thin bars touch: each run of
    // bars of one colour is one staircase outline, not a rectangle per bar (a path of hundreds
    // of rectangles costs milliseconds per frame when the canvas is committed).
    for (const accepted of [0, 1]) {
      ctx.fillStyle = accepted ? run.palette.states[NEW] : "#C8C8C8";
      ctx.beginPath();
      for (let j = 0; j < L; j++) {
        if (ex.acceptedSorted[j] !== accepted) continue;
        if (bw > 3) { // wide bars, with a gap between them
          const y = yE(ex.sorted[j]), x = j * bw + 0.5;
          ctx.rect(x, y, bw - 1, base - y);
          ctx.rect(x, hgt - 5, bw - 1, 5);
          continue;
        }
        let end = j;
        while (end + 1 < L && ex.acceptedSorted[end + 1] === accepted) end++;
        ctx.moveTo(j * bw, base);
        for (let i = j; i <= end; i++) {
          const y = yE(ex.sorted[i]);
          ctx.lineTo(i * bw, y);
          ctx.lineTo((i + 1) * bw, y);
        }
        ctx.lineTo((end + 1) * bw, base);
        ctx.closePath();
        ctx.rect(j * bw, hgt - 5, (end + 1 - j) * bw, 5);
        j = end;
      }
      ctx.fill();
    }
    // criterion (sum - max) on its own scale, clipped to 3x bound so the bound stays visible
    const cMax = Number.isFinite(bound) && bound > 0 ? Math.max(bound * 3, 1e-9)
      : Math.max(ex.criterion[L - 1], 1e-9);
    /** @param {number} v */
    const yC = (v) => base - (Math.min(v, cMax) / cMax) * (base - 14);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5; ctx.beginPath();
    for (let j = 0; j < L; j++) {
      const x = (j + 0.5) * bw;
      if (j) ctx.lineTo(x, yC(ex.criterion[j])); else ctx.moveTo(x, yC(ex.criterion[j]));
    }
    ctx.stroke();
    if (Number.isFinite(bound)) {
      ctx.setLineDash([4, 3]); ctx.strokeStyle = "#D55E00"; ctx.beginPath();
      ctx.moveTo(0, yC(bound)); ctx.lineTo(w, yC(bound)); ctx.stroke(); ctx.setLineDash([]);
    }
    ctx.font = "10px sans-serif"; ctx.fillStyle = "#555"; ctx.textAlign = "left";
    ctx.fillText(`entropy (max ${fmt(max, 2)} nats)`, 3, 9);
    ctx.textAlign = "right";
    ctx.fillText(Number.isFinite(bound) ? "\u03a3H\u2212max, clipped at 3\u00d7 bound"
      : "\u03a3H\u2212max", w - 3, 9);
    if (pinned !== null) {
      const j = ex.order.indexOf(pinned);
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1;
      ctx.strokeRect(j * bw + 0.5, 0.5, Math.max(1, bw - 1), hgt - 1);
    }
  }

  /**
   * Masked diffusion (LLaDA2): the positions masked before the step by confidence, those the
   * scheduler committed marked, against its threshold; edits and what is still masked.
   * @param {Run} run @param {Chunk} chunk @param {Location} loc @param {number} step
   * @param {number | null} pinned @param {number} width @param {number} mask
   */
  renderMasked(run, chunk, loc, step, pinned, width, mask) {
    const L = chunk.L, at = loc.local * L;
    const s = /** @type {Record<string, any>} */ (run.info.settings || {});
    const threshold = finite(s.threshold), editing = finite(s.editing_threshold);
    const ex = explainMaskedStep(chunk.confidence.subarray(at, at + L),
      chunk.canvas_in.subarray(at, at + L), chunk.draft.subarray(at, at + L), mask);
    this.order = ex.order;
    /** @param {HTMLElement} el @param {string} text */
    const put = (el, text) => { setText(el, text); setAttr(el, "title", text); };
    // diffusers' BlockRefinementScheduler: every position above the threshold, or, when fewer
    // pass it, the step's quota of the most confident
    const rule = Number.isFinite(threshold)
      ? ` (above threshold ${threshold}, or the most confident up to the step's quota)` : "";
    const edits = Number.isFinite(editing) && editing > 0
      ? ` \u00b7 edited ${ex.nEdited} (editing threshold ${editing})` : "";
    put(this.counts, `${s.sampler || "scheduler"}: committed ${ex.nCommitted} of ` +
      `${ex.order.length} masked${rule}${edits} \u00b7 ${ex.stillMasked} still masked`);
    put(this.stop, `Masked diffusion: a committed token stays unless an edit replaces it \u00b7 ` +
      `steps left in the block's budget: ${run.a.step_remaining[step]} of ` +
      `${orDash(s.max_denoising_steps)}`);
    setText(this.legend, "bars: top-1 probability of each position masked before this step, " +
      "highest first; orange: committed this step \u00b7 dashed: threshold");
    const w = width, hgt = HEIGHT, n = Math.max(1, ex.order.length);
    const ctx = sizeCanvas(this.canvas, w, hgt);
    const base = hgt - 7, bw = w / n;
    // the scale fits the data and the threshold (an untrained model's confidences are tiny)
    let top = Number.isFinite(threshold) ? threshold : 0;
    for (const v of ex.sorted) top = Math.max(top, v);
    top = Math.min(1, Math.max(top * 1.1, 1e-6));
    /** @param {number} v */
    const y = (v) => base - (Math.max(0, Math.min(top, v)) / top) * (base - 14);
    for (const committed of [0, 1]) {
      ctx.fillStyle = committed ? run.palette.states[NEW] : run.palette.states[MASKED];
      ctx.beginPath();
      for (let j = 0; j < ex.order.length; j++) {
        if (ex.committedSorted[j] !== committed) continue;
        const yj = y(ex.sorted[j]);
        ctx.rect(j * bw + (bw > 3 ? 0.5 : 0), yj, Math.max(0.5, bw - (bw > 3 ? 1 : 0)),
          base - yj);
      }
      ctx.fill();
    }
    if (Number.isFinite(threshold)) {
      ctx.setLineDash([4, 3]); ctx.strokeStyle = "#D55E00"; ctx.beginPath();
      ctx.moveTo(0, y(threshold)); ctx.lineTo(w, y(threshold)); ctx.stroke(); ctx.setLineDash([]);
    }
    ctx.font = "10px sans-serif"; ctx.fillStyle = "#555"; ctx.textAlign = "left";
    ctx.fillText(ex.order.length ? `confidence (axis to ${fmt(top, 3)})`
      : "nothing was masked before this step", 3, 9);
    const j = pinned === null ? -1 : ex.order.indexOf(pinned);
    if (j >= 0) {
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1;
      ctx.strokeRect(j * bw + 0.5, 0.5, Math.max(1, bw - 1), hgt - 1);
    }
  }
}

/**
 * The entropy bound in force at a global step: the recorded one, changed from a branch's fork
 * on (dgviz.Trace.settings_at).
 * @param {Run} run @param {number} step
 */
export function boundAt(run, step) {
  let bound = finite((run.info.settings || {}).entropy_bound);
  for (const change of run.info.changes || []) {
    if (change.step <= step && "entropy_bound" in change.settings) {
      bound = finite(change.settings.entropy_bound);
    }
  }
  return bound;
}
