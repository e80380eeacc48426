// @ts-check
// "Expert load at this step": tokens routed to each expert (all top-k slots) for one layer.
import { h, setText, sizeCanvas } from "./dom.js";
import { expertColor } from "./colors.js";
import { expertLoad } from "./explain.js";
import { clamp } from "./timeline.js";
/** @import { Chunk, Run } from "./types.js" */
/** @import { Location } from "./timeline.js" */

const HEIGHT = 110;

export class RoutingPanel {
  constructor() {
    this.title = h("div", { class: "dgv-line dgv-sub" });
    this.canvas = h("canvas", { class: "dgv-load" });
    this.hint = h("div", { class: "dgv-legend-small" });
    this.el = h("div", { class: "dgv-routing" }, this.title, this.canvas, this.hint);
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
