// @ts-check
// The canvas view: the prompt and earlier canvases as grey context, then the current canvas as
// one <span> per position. The box has a fixed height (a rule on the canvas length, set once per
// run), and its content never changes its size, so stepping, hovering and pinning never move
// anything outside it. Per step only the spans whose token or colour changed are written.
import { h } from "./dom.js";
import { expertStyle, tokenStyle } from "./colors.js";
import { shownToken, tokenText, topExpert, topWeight } from "./data.js";
import { displayText, visible } from "./layout.js";
import { clamp } from "./timeline.js";
/** @import { Chunk, Run } from "./types.js" */
/** @import { TokenStyle } from "./colors.js" */

/**
 * Lines of text the canvas box shows (context included): grows with the canvas length, within
 * bounds. A rule on the run's shape, not on its text, so it is the same at every step.
 * @param {number} length positions per canvas @param {boolean} compact
 */
export function canvasLines(length, compact) {
  return compact ? clamp(Math.ceil(length / 40) + 1, 3, 7)
    : clamp(Math.ceil(length / 14) + 3, 6, 24);
}

/** @typedef {{id: number, bg: string, fg: string, state: number, differs: number}} Cell */
/** @typedef {{mode: "canvas" | "draft", colorBy: "state" | "expert", layer: number}} TokenView */

export class TokenCanvas {
  /** @param {(pos: number | null, click: boolean) => void} onPoint a token hovered or clicked */
  constructor(onPoint) {
    this.el = h("div", { class: "dgv-canvas", "aria-label": "canvas" });
    /** @param {Event} e */
    const posOf = (e) => {
      const t = /** @type {Element} */ (e.target);
      const el = t.closest ? t.closest("[data-pos]") : null;
      if (!el || !this.el.contains(el)) return null;
      return Number(/** @type {HTMLElement} */ (el).dataset.pos);
    };
    this.el.addEventListener("click", (e) => {
      const p = posOf(e);
      if (p !== null) onPoint(p, true);
    });
    this.el.addEventListener("mouseover", (e) => {
      const p = posOf(e);
      if (p !== null) onPoint(p, false);
    });
    this.el.addEventListener("mouseleave", () => onPoint(null, false));
    /** @type {HTMLSpanElement[]} */
    this.tokenEls = [];
    /** @type {Cell[]} */
    this.cells = [];
    /** Token colours, memoised (see `style`). @type {Map<number, TokenStyle>} */
    this.styles = new Map();
    /** The canvas whose spans are built (-1: none). */
    this.shown = -1;
    /** @type {HTMLSpanElement | null} */
    this.marked = null;
  }

  /** Size the box for a run's canvas length. @param {number} length @param {boolean} compact */
  setShape(length, compact) {
    this.el.style.setProperty("--dgv-lines", String(canvasLines(length, compact)));
  }

  /** A message in place of the canvas ("Loading canvas 3…"). @param {string} text */
  message(text) {
    this.shown = -1;
    this.tokenEls = [];
    this.marked = null;
    this.el.replaceChildren(h("div", { class: "dgv-empty" }, text));
  }

  /** Forget what the spans show (token text or colours changed). */
  invalidate() {
    this.cells = this.tokenEls.map(() => ({ id: -1, bg: "", fg: "", state: -1, differs: -1 }));
  }

  /**
   * Build the context and one span per position for `canvas`.
   * @param {Run} run @param {number} canvas @param {Chunk} chunk
   */
  build(run, canvas, chunk) {
    this.shown = canvas;
    const text = h("div", { class: "dgv-context-text" });
    const prompt = run.a.prompt_ids, pad = run.info.pad_token_id, L = run.length;
    let prefix = "";
    for (let i = 0; i < prompt.length; i++) {
      if (prompt[i] !== pad) prefix += displayText(tokenText(run, prompt[i]));
    }
    text.append(document.createTextNode(prefix));
    for (let c = 0; c < canvas; c++) {
      text.append(h("span", { class: "dgv-sep", title: `canvas ${c + 1}` },
        `\u2502${c + 1}\u2502`));
      let t = "";
      for (let p = 0; p < L; p++) t += displayText(tokenText(run, run.a.final_tokens[c * L + p]));
      text.append(document.createTextNode(t));
    }
    const context = h("div", { class: "dgv-context",
      title: "Context: the prompt and earlier canvases (final text); scroll for more" }, text);
    const current = h("div", { class: "dgv-current" }, h("span",
      { class: "dgv-sep dgv-sep-now", title: `canvas ${canvas + 1} (this one)` },
      `\u2502${canvas + 1}\u2502`));
    this.tokenEls = new Array(chunk.L);
    for (let p = 0; p < chunk.L; p++) {
      this.tokenEls[p] = h("span", { class: "dgv-tok", "data-pos": p });
    }
    current.append(...this.tokenEls);
    this.el.replaceChildren(context, current);
    this.el.scrollTop = 0;
    this.marked = null;
    this.invalidate();
  }

  /**
   * Show local step `local` of `chunk`: write only what changed since the last call.
   * @param {Run} run @param {Chunk} chunk @param {number} local @param {TokenView} view
   */
  render(run, chunk, local, view) {
    const L = chunk.L, byExpert = view.colorBy === "expert" && chunk.expert_ids;
    for (let p = 0; p < L; p++) {
      const i = local * L + p;
      const id = shownToken(chunk, local, p, view.mode);
      const state = chunk.state[i];
      const style = byExpert
        ? this.style(run, 1, topExpert(chunk, local, view.layer, p),
          topWeight(chunk, local, view.layer, p))
        : this.style(run, 0, state, chunk.confidence[i]);
      const cell = this.cells[p], el = this.tokenEls[p];
      if (cell.id !== id) {
        cell.id = id;
        const raw = tokenText(run, id);
        el.textContent = displayText(raw);
        el.title = `${visible(raw)} \u00b7 position ${p}`;
      }
      if (cell.bg !== style.bg || cell.fg !== style.fg) {
        cell.bg = style.bg; cell.fg = style.fg;
        el.style.backgroundColor = style.bg;
        el.style.color = style.fg;
      }
      if (cell.state !== state) { cell.state = state; el.dataset.state = String(state); }
      // a branch: the draft differs from its parent's at the same step of the canvas
      const differs = chunk.differs ? chunk.differs[i] : 0;
      if (cell.differs !== differs) {
        cell.differs = differs;
        if (differs) el.dataset.differs = "1";
        else delete el.dataset.differs;
      }
    }
  }

  /**
   * Token colours, memoised on (kind, state or expert, value quantised to 1/64).
   * @param {Run} run @param {0 | 1} kind 0: state, 1: expert
   * @param {number} key @param {number} value
   */
  style(run, kind, key, value) {
    const q = Number.isFinite(value) ? Math.round(Math.max(0, Math.min(1, value)) * 64) : -1;
    const id = (kind * 100000 + key + 1) * 100 + q + 1;
    let st = this.styles.get(id);
    if (!st) {
      const v = q < 0 ? NaN : q / 64;
      st = kind ? expertStyle(key, v, run.palette) : tokenStyle(key, v, run.palette);
      this.styles.set(id, st);
    }
    return st;
  }

  /** Outline the pinned position. @param {number | null} pos */
  mark(pos) {
    const el = pos !== null ? this.tokenEls[pos] ?? null : null;
    if (el === this.marked) return;
    if (this.marked) this.marked.classList.remove("dgv-pinned");
    this.marked = el;
    if (el) el.classList.add("dgv-pinned");
  }
}
