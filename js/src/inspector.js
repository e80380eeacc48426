// @ts-check
// The inspector: everything about one position (hovered or pinned) at the current step. It is a
// fixed skeleton of one-line rows, built once per run shape and updated in place, so it has the
// same height whatever it shows, idle included (docs/widget.md, "Layout").
import { fmt, h, setText, sizeCanvas, svg } from "./dom.js";
import { expertColor, STATE_NAMES, textColorFor, tokenStyle } from "./colors.js";
import { expertsAt, history, shownToken, tokenText, topExpert } from "./data.js";
import { clip, visible } from "./layout.js";
import { clamp } from "./timeline.js";
/** @import { Chunk, Run } from "./types.js" */
/** @import { Location } from "./timeline.js" */

const IDLE = "Hover a token to inspect it; click to pin it.";
const SPARK_W = 150, SPARK_H = 30;

/** @param {string} cls @param {...(Node | string)} children */
const line = (cls, ...children) => h("div", { class: `dgv-line ${cls}` }, ...children);

/**
 * @typedef {object} AltRow
 * @property {HTMLElement} tok @property {HTMLElement} fill @property {HTMLElement} p
 */
/**
 * @typedef {object} Spark
 * @property {SVGElement} root @property {SVGElement} lock @property {SVGElement} now
 * @property {SVGElement} line @property {SVGElement} dot @property {HTMLElement} value
 */
/** @typedef {{entropy: HTMLElement, chips: HTMLElement[]}} ExpertRow */

export class Inspector {
  constructor() {
    this.el = h("div", { class: "dgv-inspector", "data-position": "" });
    this.shape = "";
    this.showing = "?"; // the position shown ("" idle, "?" not yet drawn)
    this.chip = h("span", { class: "dgv-chip dgv-insp-token" });
    this.headText = h("span", {});
    this.scores = line("dgv-kv");
    this.lock = line("dgv-kv");
    this.first = line("dgv-kv");
    /** @type {Record<"read" | "sampled" | "draft" | "final", HTMLElement>} */
    this.codes = { read: h("code", {}), sampled: h("code", {}), draft: h("code", {}),
      final: h("code", {}) };
    /** @type {AltRow[]} */
    this.alts = [];
    /** @type {Spark[]} */
    this.sparks = [makeSpark("confidence", "#0072B2"), makeSpark("entropy", "#B63679")];
    /** @type {ExpertRow[]} */
    this.experts = [];
    this.path = h("canvas", { class: "dgv-path",
      title: "Rows: layers 0..N-1, columns: this canvas's steps; colour: top-1 expert" });
    this.pathMark = h("div", { class: "dgv-pathmark" });
    /** What the path canvas shows ("chunk version:canvas:position"). */
    this.pathKey = "";
  }

  /** Build the skeleton for a run's shape (top-k rows, layers). @param {Run} run */
  setShape(run) {
    const { topk: K, layers, k } = run.shape;
    const shape = `${K}:${layers}:${k}`;
    if (shape === this.shape) return;
    this.shape = shape;
    this.alts = Array.from({ length: K }, () => ({ tok: h("span", { class: "dgv-alt-tok" }),
      fill: h("span", { class: "dgv-bar-fill" }), p: h("span", { class: "dgv-alt-p" }) }));
    this.experts = Array.from({ length: layers }, () => ({
      entropy: h("span", { class: "dgv-exent" }),
      chips: Array.from({ length: k }, () => h("span", { class: "dgv-chip" })) }));
    const c = this.codes;
    this.el.replaceChildren(
      line("dgv-insp-head", this.chip, this.headText),
      this.scores,
      line("dgv-kv", "read ", c.read, " sampled ", c.sampled),
      line("dgv-kv", "draft ", c.draft, " final ", c.final),
      line("dgv-sub", `Top-${K} alternatives at this step`),
      h("div", { class: "dgv-alts" }, ...this.alts.map((a, j) => h("div",
        { class: "dgv-alt", "data-rank": j }, a.tok, h("span", { class: "dgv-bar" }, a.fill),
        a.p))),
      line("dgv-sub", "History over this canvas's steps"),
      ...this.sparks.map((s, j) => h("div", { class: "dgv-sparkrow" },
        h("span", { class: "dgv-sparklabel" }, j ? "entropy" : "confidence"), s.root, s.value)),
      this.lock,
      this.first,
      ...(layers ? [
        line("dgv-sub", "Experts per decoder layer at this step"),
        h("div", { class: "dgv-experts" }, ...this.experts.map((r, l) => h("div",
          { class: "dgv-exrow" }, h("span", { class: "dgv-exlayer" }, `L${l}`), ...r.chips,
          r.entropy))),
        line("dgv-sub", "Top-1 expert path (layers \u00d7 steps)"),
        h("div", { class: "dgv-pathbox", style: `height:${layers * 9 + 2}px` }, this.path,
          this.pathMark),
      ] : []));
    this.showing = "?";
  }

  /** Nothing to inspect: the skeleton with empty values. */
  idle() {
    if (this.showing === "") return;
    this.showing = "";
    this.el.dataset.position = "";
    this.el.classList.add("dgv-idle");
    setText(this.headText, IDLE);
    for (const el of [this.chip, this.scores, this.lock, this.first]) setText(el, "");
    for (const el of Object.values(this.codes)) setText(el, "\u2013");
    for (const a of this.alts) { setText(a.tok, ""); setText(a.p, ""); a.fill.style.width = "0"; }
    for (const s of this.sparks) clearSpark(s);
    for (const r of this.experts) {
      setText(r.entropy, "");
      for (const c of r.chips) {
        setText(c, "");
        c.title = "";
        c.style.background = "transparent";
        delete c.dataset.bg;
      }
    }
    this.path.getContext("2d")?.clearRect(0, 0, this.path.width, this.path.height);
    this.pathKey = "";
    this.pathMark.hidden = true;
  }

  /**
   * Show position `pos` at step `loc.local` of `chunk`.
   * @param {Run} run @param {Chunk} chunk @param {Location} loc @param {number} pos
   * @param {{pinned: boolean, mode: "canvas" | "draft"}} view
   */
  show(run, chunk, loc, pos, view) {
    const L = chunk.L, local = loc.local, i = local * L + pos;
    this.showing = `${pos}`;
    this.el.dataset.position = String(pos);
    this.el.classList.remove("dgv-idle");
    const state = chunk.state[i];
    /** @param {number} id */
    const text = (id) => visible(tokenText(run, id));
    const st = tokenStyle(state, chunk.confidence[i], run.palette);
    const chip = this.chip;
    setText(chip, clip(text(shownToken(chunk, local, pos, view.mode)), 40));
    chip.style.background = st.bg;
    chip.style.color = st.fg;
    setText(this.headText,
      ` position ${pos} \u00b7 ${STATE_NAMES[state]}${view.pinned ? " \u00b7 pinned" : ""}`);
    setText(this.scores,
      `confidence ${fmt(chunk.confidence[i], 3)} \u00b7 entropy ${fmt(chunk.entropy[i], 3)} nats`);
    const codes = this.codes;
    setText(codes.read, clip(text(chunk.canvas_in[i]), 20));
    setText(codes.sampled, clip(text(chunk.sampled[i]), 20));
    setText(codes.draft, clip(text(chunk.draft[i]), 20));
    setText(codes.final, clip(text(run.a.final_tokens[loc.canvas * L + pos]), 20));

    const K = chunk.K;
    this.alts.forEach((a, j) => {
      if (j >= K) return;
      const p = chunk.topk_probs[i * K + j];
      setText(a.tok, clip(text(chunk.topk_ids[i * K + j]), 18));
      setText(a.p, fmt(p, 3));
      a.fill.style.width = `${(clamp(p, 0, 1) * 100).toFixed(1)}%`;
    });

    const at = loc.canvas * L + pos;
    const lock = run.a.lock_in[at], first = run.a.first_accepted[at], flips = run.a.flips[at];
    const lockLocal = lock >= 0 && lock < loc.hi ? lock - loc.lo : -1;
    const [conf, ent] = this.sparks;
    sparkline(conf, history(chunk, "confidence", pos), local, lockLocal, [0, 1]);
    sparkline(ent, history(chunk, "entropy", pos), local, lockLocal, null);
    setText(this.lock, `draft flips ${flips} \u00b7 lock-in ${lock >= 0 && lockLocal >= 0
      ? `step ${lockLocal + 1} of canvas` : "not yet"}`);
    setText(this.first, `first accepted ${first >= 0 ? `step ${first - loc.lo + 1}` : "never"}`);

    if (chunk.expert_ids && this.experts.length) {
      const rows = expertsAt(chunk, local, pos);
      rows.forEach(({ picks, entropy }, l) => {
        const row = this.experts[l];
        if (!row) return;
        setText(row.entropy, `H ${fmt(entropy, 2)}`);
        picks.forEach(({ expert, weight }, j) => {
          const c = row.chips[j];
          if (!c) return;
          // 30 layers x 8 chips at the real shape: write only what changed since the last step
          const title = `expert ${expert}, weight ${fmt(weight, 3)}`;
          if (c.title === title) return;
          c.title = title;
          c.textContent = `e${expert} ${fmt(weight, 2)}`;
          const bg = expertColor(expert, run.palette);
          if (c.dataset.bg !== bg) {
            c.dataset.bg = bg;
            c.style.background = bg;
            c.style.color = textColorFor(bg);
          }
        });
      });
      const key = `${chunk.version}:${chunk.canvas}:${pos}`;
      if (key !== this.pathKey) { // the path changes with the position, not with the step
        this.pathKey = key;
        expertPath(this.path, run, chunk, pos);
      }
      const cell = pathCell(chunk.n);
      this.pathMark.hidden = false;
      this.pathMark.style.width = `${cell + 1}px`;
      this.pathMark.style.transform = `translateX(${local * cell}px)`;
    }
  }
}

/**
 * A sparkline as SVG (a canvas per sparkline, redrawn at every step, cost more per frame).
 * @param {string} label @param {string} colour
 * @returns {Spark}
 */
function makeSpark(label, colour) {
  const el = svg;
  const lock = el("rect", { y: "0", height: String(SPARK_H), fill: "rgba(0,158,115,0.15)" });
  const now = el("line", { y1: "0", y2: String(SPARK_H), stroke: "#999" });
  const line = el("polyline", { fill: "none", stroke: colour, "stroke-width": "1.5" });
  const dot = el("circle", { r: "2.5", fill: "#000" });
  const root = el("svg", { class: "dgv-spark", width: String(SPARK_W), height: String(SPARK_H),
    viewBox: `0 0 ${SPARK_W} ${SPARK_H}`, role: "img", "aria-label": `${label} over steps` });
  root.append(lock, now, line, dot);
  return { root, lock, now, line, dot, value: h("span", { class: "dgv-sparkval" }) };
}

/** @param {Spark} spark */
function clearSpark(spark) {
  for (const el of [spark.lock, spark.now, spark.line, spark.dot]) {
    el.setAttribute("visibility", "hidden");
  }
  setText(spark.value, "");
}

/**
 * @param {Spark} spark @param {Float32Array} values @param {number} current
 * @param {number} lockLocal the local step the position locks in at (-1: not yet)
 * @param {[number, number] | null} range fixed y range, or null for the values' own
 */
function sparkline(spark, values, current, lockLocal, range) {
  const w = SPARK_W, hgt = SPARK_H;
  let lo = range ? range[0] : Infinity, hi = range ? range[1] : -Infinity;
  if (!range) {
    for (const v of values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  if (!(hi > lo)) { hi = lo + 1; }
  const n = values.length;
  /** @param {number} s */
  const x = (s) => (n > 1 ? 4 + (s / (n - 1)) * (w - 8) : w / 2);
  /** @param {number} v */
  const y = (v) => hgt - 4 - ((v - lo) / (hi - lo)) * (hgt - 8);
  const at = x(current).toFixed(1);
  spark.lock.setAttribute("visibility", lockLocal >= 0 ? "visible" : "hidden");
  if (lockLocal >= 0) {
    spark.lock.setAttribute("x", x(lockLocal).toFixed(1));
    spark.lock.setAttribute("width", (w - x(lockLocal)).toFixed(1));
  }
  for (const el of [spark.now, spark.line, spark.dot]) el.setAttribute("visibility", "visible");
  spark.now.setAttribute("x1", at);
  spark.now.setAttribute("x2", at);
  let points = "";
  values.forEach((v, s) => { points += `${x(s).toFixed(1)},${y(v).toFixed(1)} `; });
  spark.line.setAttribute("points", points);
  spark.dot.setAttribute("cx", at);
  spark.dot.setAttribute("cy", y(values[current]).toFixed(1));
  setText(spark.value, fmt(values[current], 2));
}

/** Width of one step in the expert path. @param {number} n steps of the canvas */
const pathCell = (n) => Math.max(3, Math.min(12, Math.floor(260 / n)));

/**
 * The top-1 expert of every layer at every step of the canvas (the current step is outlined by
 * `.dgv-pathmark`, moved without redrawing this).
 * @param {HTMLCanvasElement} canvas @param {Run} run @param {Chunk} chunk @param {number} pos
 */
function expertPath(canvas, run, chunk, pos) {
  const { layers, n } = chunk;
  const cell = pathCell(n);
  const w = n * cell, hgt = layers * 9;
  const ctx = sizeCanvas(canvas, w + 2, hgt + 2);
  for (let s = 0; s < n; s++) for (let l = 0; l < layers; l++) {
    ctx.fillStyle = expertColor(topExpert(chunk, s, l, pos), run.palette);
    ctx.fillRect(1 + s * cell, 1 + l * 9, cell - 1, 8);
  }
}
