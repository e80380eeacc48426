// @ts-check
// "Expert load at this step": tokens routed to each expert (all top-k slots) for one layer.
import { h, setText, sizeCanvas } from "./dom.js";
import { expertColor } from "./colors.js";
import { expertLoad } from "./explain.js";
import { clamp } from "./timeline.js";
/** @import { Chunk, Run } from "./types.js" */
/** @import { Location } from "./timeline.js" */

const HEIGHT = 110;

/**
 * One line on how this step's routing compares with the step before's (a finished run).
 * @param {Run} run @param {number} step global @param {number} layer @param {number} layers
 */
export function driftText(run, step, layer, layers) {
  const a = run.a, i = step * layers + layer;
  if (!a.routing_similarity || i >= a.routing_similarity.length) return "\u00a0";
  const used = `${a.experts_used[i]} of ${run.shape.experts} experts used`;
  const sim = a.routing_similarity[i];
  if (!Number.isFinite(sim)) return `${used} \u00b7 first step of its canvas`;
  /** @param {number} v */
  const f = (v) => (Number.isFinite(v) ? v.toFixed(2) : "\u2013");
  return `${used} \u00b7 similarity to the step before ${f(sim)} ` +
    `(token changed ${f(a.routing_changed[i])}, stayed ${f(a.routing_stayed[i])})`;
}

export class RoutingPanel {
  constructor() {
    this.title = h("div", { class: "dgv-line dgv-sub" });
    this.drift = h("div", { class: "dgv-line dgv-drift",
      title: "Routing vs the step before (this layer): weighted Jaccard similarity of each " +
        "position's expert weights, averaged; split by positions whose token changed or stayed" });
    this.canvas = h("canvas", { class: "dgv-load" });
    this.hint = h("div", { class: "dgv-legend-small" });
    this.el = h("div", { class: "dgv-routing" }, this.title, this.drift, this.canvas, this.hint);
    /** @type {boolean | null} */
    this.routed = null;
  }

  /** @param {boolean} routed */
  setRouted(routed) {
    if (this.routed === routed) return;
    this.routed = routed;
    this.canvas.hidden = !routed;
    if (!routed) setText(this.title, "Routing");
    setText(this.hint, routed
      ? "tokens routed to each expert (all top-k slots); choose \"colour: top-1 expert\" to " +
        "colour the canvas by expert"
      : "No routing in this trace (record with routing=True, or it was left out to fit the " +
        "payload cap).");
  }

  /**
   * @param {Run} run @param {Chunk} chunk @param {Location} loc @param {number} layerChoice
   * @param {number} width chart width
   */
  render(run, chunk, loc, layerChoice, width) {
    this.setRouted(Boolean(chunk.expert_ids));
    if (!chunk.expert_ids) return;
    const E = run.shape.experts, L = chunk.L, k = chunk.k, layers = chunk.layers;
    const layer = clamp(layerChoice, 0, layers - 1);
    setText(this.title, `Expert load at this step, layer ${layer} (top-${k} of ${E})`);
    setText(this.drift, driftText(run, loc.lo + loc.local, layer, layers));
    const span = layers * L * k;
    const counts = expertLoad(chunk.expert_ids.subarray(loc.local * span, (loc.local + 1) * span),
      layer, L, k, E);
    const w = width, hgt = HEIGHT;
    const ctx = sizeCanvas(this.canvas, w, hgt);
    const max = Math.max(1, ...counts);
    const bw = w / E;
    ctx.font = "9px sans-serif"; ctx.textAlign = "center";
    for (let e = 0; e < E; e++) {
      const bh = (counts[e] / max) * (hgt - 24);
      ctx.fillStyle = expertColor(e, run.palette);
      ctx.fillRect(e * bw + 1, hgt - 12 - bh, Math.max(1, bw - 2), bh);
      if (bw >= 14) {
        ctx.fillStyle = "#333";
        ctx.fillText(`e${e}`, (e + 0.5) * bw, hgt - 2);
        if (counts[e]) ctx.fillText(String(counts[e]), (e + 0.5) * bw, hgt - 14 - bh);
      }
    }
  }
}
