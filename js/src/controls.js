// @ts-check
// The widget's chrome: header, facts, playback controls, the canvas strip, the option menus, the
// colour legend, and the keys. Every row keeps its height whatever the step (docs/widget.md,
// "Layout"): one-line texts are clipped with an ellipsis, the step label has a fixed width.
import { h, icon, setAttr, setText } from "./dom.js";
import { expertColor, NEW, STATE_NAMES, statesOf, textColorFor, tokenStyle } from "./colors.js";
import { formatBytes } from "./data.js";
import { clip } from "./layout.js";
import { stepToFraction } from "./timeline.js";
/** @import { Run } from "./types.js" */
/** @import { Location } from "./timeline.js" */

const SPEEDS = [1, 2, 4, 8, 16];
const OWN_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "PageUp", "PageDown",
  "Home", "End", " ", "Enter", "Escape"]);

/**
 * What the controls ask the view to do.
 * @typedef {object} Actions
 * @property {() => void} togglePlay
 * @property {(delta: number) => void} nudge step by delta
 * @property {(dir: number) => void} jump a canvas back or forward
 * @property {(step: number) => void} seek pause and go to a global step
 * @property {(value: number) => void} slide the slider moved
 * @property {(fraction: number) => void} strip the strip was clicked at x fraction
 * @property {(canvas: number) => void} canvas
 * @property {(mode: string) => void} syncMode
 * @property {() => void} unpin
 * @property {() => void} stop stop a live run
 * @property {() => void} branch Enter in the branch bar's text box: branch there
 * @property {() => void} options a menu changed (speed, text mode, colour, layer): re-read them
 */

/**
 * @param {string} label @param {string} title @param {() => void} fn
 * @param {string} cls @param {string | null} iconName
 */
function button(label, title, fn, cls, iconName) {
  const text = h("span", { class: "dgv-btn-label" }, label);
  return h("button", { class: `dgv-btn ${cls}`, title, type: "button", "aria-label": title,
    onclick: fn }, iconName ? icon(iconName) : null, text);
}

/**
 * @param {string} cls @param {string} title @param {[string, string][]} options
 * @param {() => void} onchange
 */
function select(cls, title, options, onchange) {
  return h("select", { class: cls, title, onchange },
    ...options.map(([value, label]) => h("option", { value }, label)));
}

/**
 * The run's cost for the header: forward passes, tokens per pass, tokens per second.
 * @param {import("./types.js").RunStats | undefined} stats
 */
export function costText(stats) {
  if (!stats || !stats.forward_passes) return "";
  /** @param {number | null | undefined} v @param {number} d */
  const num = (v, d) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(d) : null);
  const parts = [`${stats.forward_passes} forward passes`];
  const tpf = num(stats.tokens_per_forward, 2), tps = num(stats.tokens_per_second, 1);
  if (tpf) parts.push(`${tpf} tokens/pass`);
  if (tps) parts.push(`${tps} tokens/s`);
  return ` (${parts.join(", ")})`;
}

export class Controls {
  /** @param {Actions} actions */
  constructor(actions) {
    this.actions = actions;
    this.title = h("div", { class: "dgv-title" });
    this.facts = h("div", { class: "dgv-facts dgv-line" });
    this.status = h("div", { class: "dgv-status" });
    this.error = h("div", { class: "dgv-error", role: "alert" });
    this.stopBtn = button("Stop", "Stop the run (the steps so far are kept)", actions.stop,
      "dgv-stop", "stop");
    this.syncSel = select("dgv-syncmode",
      "Synchronized runs: align them by the fraction of each run's steps, or by decoder " +
        "forward passes",
      [["normalized", "sync: fraction of steps"], ["forward_passes", "sync: forward passes"]],
      () => actions.syncMode(this.syncSel.value));
    this.syncSel.hidden = true;

    this.playBtn = button("Play", "Play / pause (space)", actions.togglePlay, "dgv-play", "play");
    this.playLabel = /** @type {HTMLElement} */ (this.playBtn.lastChild);
    this.slider = h("input", { type: "range", class: "dgv-slider", min: 0, max: 0, step: 1,
      value: 0, "aria-label": "step", oninput: () => actions.slide(Number(this.slider.value)) });
    this.stepLabel = h("span", { class: "dgv-steplabel" });
    this.speedSel = select("dgv-speed", "Playback speed (steps per second)",
      SPEEDS.map((s) => [String(s), `${s} steps/s`]), actions.options);
    this.speedSel.value = "4";
    this.canvasSel = select("dgv-canvas-select", "Canvas", [],
      () => actions.canvas(Number(this.canvasSel.value)));
    this.colorSel = select("dgv-colorby", "Colour tokens by",
      [["state", "colour: state"], ["expert", "colour: top-1 expert"]], actions.options);
    this.layerSel = select("dgv-layer", "Decoder MoE layer for routing colours and load", [],
      actions.options);
    this.modeSel = select("dgv-mode", "Which token each position shows",
      [["canvas", "text: canvas"], ["draft", "text: argmax draft"]], actions.options);
    this.strip = h("div", { class: "dgv-strip",
      title: "Global timeline: one segment per canvas (click to jump)" });
    this.strip.addEventListener("click", (e) => {
      const box = this.strip.getBoundingClientRect(); // a click: one read, before any write
      actions.strip((e.clientX - box.left) / box.width);
    });
    this.playhead = h("div", { class: "dgv-playhead" });
    this.legend = h("div", { class: "dgv-legend" });
    this.header = h("div", { class: "dgv-header" }, this.title, this.status, this.syncSel,
      this.stopBtn);
    this.row = h("div", { class: "dgv-controls" },
      button("canvas", "Previous canvas (Page Up / Shift+\u2190)", () => actions.jump(-1),
        "dgv-canvasjump", "canvas-back"),
      button("step", "Previous step (\u2190)", () => actions.nudge(-1), "dgv-stepjump",
        "step-back"),
      this.playBtn,
      button("step", "Next step (\u2192)", () => actions.nudge(1), "dgv-stepjump dgv-icon-end",
        "step-forward"),
      button("canvas", "Next canvas (Page Down / Shift+\u2192)", () => actions.jump(1),
        "dgv-canvasjump dgv-icon-end", "canvas-forward"),
      this.slider, this.stepLabel);
    this.options = h("div", { class: "dgv-options" }, this.speedSel, this.canvasSel, this.modeSel,
      this.colorSel, this.layerSel);
    this.playing = false;
    this.segOn = -1;
  }

  /** The menus' current choices. */
  choices() {
    return {
      speed: Number(this.speedSel.value),
      colorBy: /** @type {"state" | "expert"} */ (
        this.colorSel.value === "expert" ? "expert" : "state"),
      layer: Number(this.layerSel.value) || 0,
      mode: /** @type {"canvas" | "draft"} */ (this.modeSel.value === "draft" ? "draft" : "canvas"),
    };
  }

  /** A new run: its layers, canvases and the longest step label. @param {Run} run */
  setRun(run) {
    const layers = run.shape.layers;
    if (this.layerSel.options.length !== layers) {
      const keep = Math.min(Number(this.layerSel.value) || 0, Math.max(0, layers - 1));
      this.layerSel.replaceChildren(...Array.from({ length: layers },
        (_, i) => h("option", { value: i }, `layer ${i}`)));
      this.layerSel.value = String(keep);
    }
    this.layerSel.disabled = !layers;
    this.layerSel.hidden = !layers;
    const expert = /** @type {HTMLOptionElement} */ (this.colorSel.options[1]);
    expert.disabled = !layers;
    // masked diffusion (LLaDA2): the draft is the canvas the pipeline kept, so there is one
    // text mode, and the menu is hidden
    const masked = run.info.mask_token_id !== null && run.info.mask_token_id !== undefined;
    if (masked) this.modeSel.value = "draft";
    this.modeSel.hidden = masked;
    const c = run.bounds.length;
    if (this.canvasSel.options.length !== c) {
      this.canvasSel.replaceChildren(...Array.from({ length: c },
        (_, i) => h("option", { value: i }, `canvas ${i + 1} of ${c}`)));
    }
  }

  /** @param {string} status @param {string} error */
  renderStatus(status, error) {
    setText(this.status, status);
    this.status.dataset.status = status.split(/[\s:]/)[0] || "";
    setText(this.error, error);
    this.error.hidden = !error;
    this.stopBtn.hidden = !status.startsWith("running");
  }

  /**
   * Title, facts and the transport note.
   * @param {Run} run @param {string | null} label @param {number} loaded canvases in the browser
   * @param {HTMLElement} note
   */
  renderHeader(run, label, loaded, note) {
    const info = run.info;
    const prompt = (info.prompt_text || "").replace(/\s+/g, " ").trim();
    setText(this.title, label ? clip(label, 120)
      : `dgviz \u00b7 ${clip(prompt || "canvas timeline", 70)}`);
    setAttr(this.title, "title", label || prompt);
    const s = info.settings || {};
    const bound = s.entropy_bound;
    const facts = [info.model_name, s.sampler,
      typeof bound === "number" && Number.isFinite(bound) ? `entropy bound ${bound}` : null,
      `${run.bounds.length} canvas(es) \u00d7 ${run.length} positions`,
      `${run.steps} steps${costText(info.stats)}`,
      info.batch_size > 1 ? `row ${info.row} of ${info.batch_size}` : null,
      info.complete === false && !info.live ? "INCOMPLETE run" : null,
      info.fork ? `branched at step ${info.fork.step + 1}` : null,
    ].filter(Boolean).join(" \u00b7 ");
    setText(this.facts, facts);
    setAttr(this.facts, "title", facts);
    const t = run.transport, n = run.bounds.length;
    const routing = t.routing ? "" : ", routing left out";
    const bytes = formatBytes(t.total_bytes ?? 0);
    setText(note, t.offline
      ? `Offline replay: all ${n} canvas(es) embedded in this file (${bytes}${routing}).`
      : t.mode === "all"
        ? `All ${n} canvas(es) sent to the browser (${bytes}${routing}).`
        : `Large trace (${bytes}): the browser holds at most ${formatBytes(t.cap_bytes ?? 0)}, ` +
          `so canvases are sent on demand (${loaded} of ${n} loaded)` +
          `${t.routing ? "" : "; routing left out"}.`);
  }

  /** @param {boolean} playing */
  renderPlaying(playing) {
    if (this.playing === playing) return;
    this.playing = playing;
    const old = /** @type {Node} */ (this.playBtn.firstChild);
    this.playBtn.replaceChild(icon(playing ? "pause" : "play"), old);
    setText(this.playLabel, playing ? "Pause" : "Play");
  }

  /**
   * Slider, step label, canvas menu and strip.
   * @param {Run} run @param {Location} loc @param {number} step
   * @param {{max: number, value: number}} slider
   * @param {string} label
   */
  renderPosition(run, loc, step, slider, label) {
    if (this.slider.max !== String(slider.max)) this.slider.max = String(slider.max);
    if (this.slider.value !== String(slider.value)) this.slider.value = String(slider.value);
    setText(this.stepLabel, label);
    if (this.canvasSel.value !== String(loc.canvas)) this.canvasSel.value = String(loc.canvas);
    this.renderStrip(run, loc, step);
  }

  /** @param {Run} run @param {Location} loc @param {number} step */
  renderStrip(run, loc, step) {
    const n = run.steps;
    const segments = run.bounds.length;
    const fork = run.info.fork;
    const key = `${n}:${fork ? fork.step : ""}`;
    if (this.strip.dataset.key !== key || this.strip.childElementCount < segments + 1) {
      this.strip.dataset.key = key;
      // a branch: a mark where it left its parent (first step that differs)
      const mark = fork ? h("div", { class: "dgv-forkmark",
        style: `left: ${(stepToFraction(fork.step, n) * 100).toFixed(3)}%`,
        title: `branched from its parent run at step ${fork.step + 1}` }) : null;
      this.strip.replaceChildren(...run.bounds.map(([lo, hi], c) => h("div",
        { class: "dgv-seg", style: `flex: ${hi - lo} 0 0`, "data-canvas": c }, `canvas ${c + 1}`)),
      ...(mark ? [mark] : []), this.playhead);
      this.segOn = -1;
    }
    if (this.segOn !== loc.canvas) {
      if (this.segOn >= 0) this.strip.children[this.segOn]?.classList.remove("dgv-seg-on");
      this.strip.children[loc.canvas].classList.add("dgv-seg-on");
      this.segOn = loc.canvas;
    }
    // an absolutely positioned playhead: moving it lays out only itself
    this.playhead.style.left = `${(stepToFraction(step, n) * 100).toFixed(3)}%`;
  }

  /**
   * The colour legend (rebuilt only when the colour mode or layer changes).
   * @param {Run} run @param {"state" | "expert"} colorBy @param {number} layer
   */
  renderLegend(run, colorBy, layer) {
    const pal = run.palette;
    const states = statesOf(run.info.mask_token_id, Boolean(run.info.held));
    const key = `${colorBy}:${layer}:${run.shape.experts}:${states.join("")}`;
    if (this.legend.dataset.key === key) return;
    this.legend.dataset.key = key;
    /**
     * @param {string} bg
     * @param {string} fg
     * @param {string} text
     * @param {Record<string, string | number>} [attrs]
     */
    const chip = (bg, fg, text, attrs = {}) => h("span", { class: "dgv-chip", ...attrs,
      style: `background:${bg};color:${fg}` }, text);
    if (colorBy === "expert") {
      const E = run.shape.experts;
      this.legend.replaceChildren(
        h("span", { class: "dgv-legend-title" },
          `Top-1 expert, layer ${layer} (intensity = router weight):`),
        ...Array.from({ length: E }, (_, e) => {
          const bg = expertColor(e, pal);
          return chip(bg, textColorFor(bg), `e${e}`);
        }),
        ...(E > pal.experts.length ? [h("span", { class: "dgv-legend-note" },
          `(${E} experts share ${pal.experts.length} colours; hover shows ids)`)] : []));
      return;
    }
    const chips = states.map((s) => {
      const st = tokenStyle(s, 1, pal);
      return chip(st.bg, st.fg, STATE_NAMES[s], { "data-state": s });
    });
    const ramp = h("span",
      { class: "dgv-ramp", title: "Colour intensity follows the token's confidence" },
      ...[0, 0.5, 1].map((c) => {
        const st = tokenStyle(NEW, c, pal);
        return h("span", { style: `background:${st.bg};color:${st.fg}` }, c.toFixed(1));
      }));
    this.legend.replaceChildren(h("span", { class: "dgv-legend-title" }, "State:"), ...chips,
      h("span", { class: "dgv-legend-title" }, "confidence \u2192 intensity"), ramp);
  }
}

/**
 * JupyterLab and Notebook 7 handle keydown on the document: Lab prevents the arrow keys'
 * default (a focused range input stops moving), Notebook 7 even stops them in the capture phase,
 * so a listener on our own element never sees them. Listen on the window in the capture phase
 * (before both) and keep the keys we use to ourselves while the focus is inside the widget;
 * other keys (Shift+Enter, ...) go on to Jupyter. `composedPath` sees through a shadow root
 * (marimo renders widgets in one), where `event.target` is the host element.
 * @param {HTMLElement} root @param {Actions} actions @param {() => boolean} ready
 * @returns {() => void} removes the listener
 */
export function bindKeys(root, actions, ready) {
  const win = root.ownerDocument.defaultView || globalThis;
  /** @param {KeyboardEvent} e */
  const onKey = (e) => {
    const path = e.composedPath();
    if (!path.includes(root)) return;
    const t = /** @type {HTMLElement} */ (path[0]);
    if (t && t.tagName === "INPUT" && /** @type {HTMLInputElement} */ (t).type === "text") {
      // typing a token: every key is the text box's (the notebook's shortcuts included)
      e.stopPropagation();
      if (e.key === "Enter") { e.preventDefault(); actions.branch(); }
      return;
    }
    if (!OWN_KEYS.has(e.key)) return;
    e.stopPropagation();
    const tag = t && t.tagName;
    const native = tag === "SELECT" || (tag === "INPUT" && e.key !== " ") ||
      (tag === "BUTTON" && (e.key === " " || e.key === "Enter"));
    if (native && !(tag === "INPUT" && e.key.startsWith("Arrow") && e.shiftKey)) return;
    /** @type {Record<string, () => void>} */
    const keys = {
      ArrowRight: () => (e.shiftKey ? actions.jump(1) : actions.nudge(1)),
      ArrowLeft: () => (e.shiftKey ? actions.jump(-1) : actions.nudge(-1)),
      PageDown: () => actions.jump(1),
      PageUp: () => actions.jump(-1),
      Home: () => actions.seek(0),
      End: () => actions.seek(Infinity),
      " ": actions.togglePlay,
      Escape: actions.unpin,
    };
    const fn = keys[e.key];
    if (fn && ready()) { e.preventDefault(); fn(); }
  };
  win.addEventListener("keydown", onKey, true);
  return () => win.removeEventListener("keydown", onKey, true);
}
