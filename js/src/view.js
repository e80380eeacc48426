// @ts-check
// The timeline view: reads the model (run, canvas chunks, token text), holds the view state
// (playhead, hover, pin, menus: JS only; only a click goes back to Python as `selection`) and
// renders the parts. Token text is untrusted model output: it only ever reaches the page through
// textContent / createTextNode / setAttribute (never innerHTML).
//
// Rendering never reads layout: widths come from a ResizeObserver, and every part keeps its
// size from step to step (docs/widget.md, "Layout"), so a step costs one style, layout and
// paint pass of what changed.
import { chartWidth, h } from "./dom.js";
import { RunStore } from "./store.js";
import { Controls, bindKeys } from "./controls.js";
import { TokenCanvas } from "./tokens.js";
import { Inspector } from "./inspector.js";
import { BranchBar } from "./branch.js";
import { Explainer } from "./explainer.js";
import { RoutingPanel } from "./routing.js";
import { Player } from "./player.js";
import { SyncLink } from "./synclink.js";
import { isSyncMode } from "./sync.js";
import { clamp, fractionToStep, jumpCanvas, locate, stepBy } from "./timeline.js";
/** @import { Model, Run } from "./types.js" */
/** @import { SyncMode } from "./timeline.js" */

export class TimelineView {
  /** @param {Model} model @param {HTMLElement} el */
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.store = new RunStore(model);
    this.ui = {
      step: 0, follow: true,
      /** @type {number | null} */ pinned: null,
      /** @type {number | null} */ hover: null,
    };
    /** @type {SyncLink | null} */
    this.link = null;
    /** @type {Map<Element, number>} panel widths from the ResizeObserver */
    this.widths = new Map();
    /** @type {(() => void)[]} */
    this.disposers = [];
    this.shapeKey = "";
    this.compact = false;

    const actions = {
      togglePlay: () => (this.player.playing ? this.pause() : this.play()),
      /** @param {number} d */
      nudge: (d) => this.run && this.seek(stepBy(this.ui.step, d, this.run.steps)),
      /** @param {number} d */
      jump: (d) => this.run && this.seek(jumpCanvas(this.run.bounds, this.ui.step, d)),
      /** @param {number} step */
      seek: (step) => this.run && this.seek(Math.min(step, this.run.steps - 1)),
      /** @param {number} value */
      slide: (value) => { this.pause(); this.slide(value); },
      /** @param {number} f */
      strip: (f) => this.run && this.seek(fractionToStep(f, this.run.steps)),
      /** @param {number} c */
      canvas: (c) => this.run && this.seek(this.run.bounds[c][0]),
      /** @param {string} mode */
      syncMode: (mode) => { if (this.link) { this.link.setMode(mode); this.broadcastStep(); } },
      unpin: () => { this.ui.pinned = null; this.sendSelection(); this.render(); },
      stop: () => this.model.send({ kind: "stop" }),
      branch: () => this.branchBar.submit(),
      options: () => { this.tokenCanvas.invalidate(); this.render(); },
    };
    this.controls = new Controls(actions);
    this.player = new Player(() => this.controls.choices().speed, () => this.renderControls());
    this.tokenCanvas = new TokenCanvas((pos, click) => this.point(pos, click));
    this.note = h("div", { class: "dgv-note dgv-line" });
    this.inspector = new Inspector();
    this.branchBar = new BranchBar((request) => this.model.send(request));
    this.explainer = new Explainer((pos) => {
      this.ui.pinned = pos;
      this.sendSelection();
      this.render();
    });
    this.routing = new RoutingPanel();
    const c = this.controls;
    this.root = h("div", { class: "dgv-root", tabindex: 0 },
      c.header, c.facts, c.error, c.row, c.strip, c.options, c.legend,
      h("div", { class: "dgv-main" }, this.tokenCanvas.el, this.inspector.el),
      this.branchBar.el, this.note,
      h("div", { class: "dgv-bottom" }, this.explainer.el, this.routing.el));
    this.disposers.push(bindKeys(this.root, actions, () => Boolean(this.run && this.run.steps)));
    this.observeWidths([this.explainer.el, this.routing.el]);
    el.append(this.root);

    /** @param {string} name @param {() => void} fn */
    const on = (name, fn) => {
      model.on(name, fn);
      this.disposers.push(() => model.off(name, fn));
    };
    on("change:_run", () => { this.loadRun(false); this.render(); });
    on("change:_chunks", () => { this.loadChunks(); this.render(); });
    on("change:_live", () => { this.loadChunks(); this.loadTokens(); this.render(); });
    on("change:_tokens", () => { this.loadTokens(); this.tokenCanvas.shown = -1; this.render(); });
    on("change:status", () => this.renderStatus());
    on("change:error", () => this.renderStatus());
    on("change:compact", () => { this.applyCompact(); this.render(); });
    on("change:label", () => this.render());
    on("change:can_branch", () => { this.applyBranching(); this.render(); });
    // from Python (a member's own change is already the group's mode)
    on("change:sync_mode", () => {
      const mode = model.get("sync_mode");
      if (this.link && mode !== this.link.mode && isSyncMode(mode)) {
        this.link.setMode(mode);
        this.broadcastStep();
      }
    });
    on("change:sync", () => { this.leaveSync(); this.joinSync(); this.render(); });
    this.applyCompact();
    this.applyBranching();
    this.loadTokens();
    this.loadRun(true);
    this.loadChunks();
    this.joinSync();
    this.render();
  }

  destroy() {
    this.leaveSync();
    this.player.stop();
    this.store.dispose();
    for (const d of this.disposers) d();
    this.root.remove();
  }

  // ------------------------------------------------------------------ data
  /** @param {boolean} initial */
  loadRun(initial) {
    const prev = this.store.loadRun();
    const run = this.store.run;
    if (!run) return;
    const last = Math.max(0, run.steps - 1);
    if (initial) this.ui.step = run.initial_step ?? 0;
    // a live run: keep showing the newest step (also on its final update) unless the user
    // scrubbed away
    else if (this.ui.follow && (run.info.live || (prev && prev.info.live))) this.ui.step = last;
    this.ui.step = clamp(this.ui.step, 0, last);
    this.controls.setRun(run);
    this.applyShape();
  }

  loadTokens() {
    this.store.loadTokens();
    this.tokenCanvas.invalidate();
  }

  loadChunks() {
    if (this.store.loadChunks().has(this.tokenCanvas.shown)) this.tokenCanvas.shown = -1;
  }

  /** @returns {Run | null} */
  get run() { return this.store.run; }

  // ------------------------------------------------------------------ layout
  /**
   * Sizes that follow the run's shape, not its text: the canvas box's lines, the step label's
   * width, the inspector's rows. Set when the shape changes (so also not at every live step).
   */
  applyShape() {
    const run = this.run;
    if (!run) return;
    const longest = this.stepLabel(run, Math.max(0, run.steps - 1), true).length;
    const { topk, layers, k } = run.shape;
    const key = `${run.length}:${topk}:${layers}:${k}:${this.compact}:${longest}`;
    if (key === this.shapeKey) return;
    this.shapeKey = key;
    this.tokenCanvas.setShape(run.length, this.compact);
    this.root.style.setProperty("--dgv-label-ch", String(longest + 1));
    this.inspector.setShape(run);
  }

  /**
   * Follow the width of panels that hold charts (read by the observer, never per step).
   * @param {Element[]} panels
   */
  observeWidths(panels) {
    if (typeof ResizeObserver === "undefined") return;
    const resizer = new ResizeObserver((entries) => {
      let changed = false;
      for (const e of entries) {
        const w = Math.round(e.contentRect.width + 16); // content box + padding, as clientWidth
        if (this.widths.get(e.target) !== w) { this.widths.set(e.target, w); changed = true; }
      }
      if (changed && this.run && this.run.steps) this.render();
    });
    for (const p of panels) resizer.observe(p);
    this.disposers.push(() => resizer.disconnect());
  }

  /** The "branch here" line: only with a model attached (never offline). */
  applyBranching() {
    this.branchBar.enable(Boolean(this.model.get("can_branch")));
    this.branchBar.idle();
  }

  applyCompact() {
    this.compact = Boolean(this.model.get("compact"));
    this.root.classList.toggle("dgv-compact", this.compact);
    this.root.dataset.compact = String(this.compact);
    this.applyShape();
  }

  // ------------------------------------------------------------------ sync
  joinSync() {
    const name = this.model.get("sync");
    this.link = null;
    if (typeof name !== "string" || !name) {
      this.controls.syncSel.hidden = true;
      delete this.root.dataset.sync;
      return;
    }
    this.root.dataset.sync = name;
    this.controls.syncSel.hidden = false;
    this.link = new SyncLink(name, this.model.get("sync_mode"), {
      info: () => this.store.stepsInfo(),
      show: (step) => { this.pause(); this.ui.step = step; this.ui.follow = false; this.render(); },
      modeChanged: (mode) => this.modeChanged(mode),
      refresh: () => this.renderControls(),
    });
  }

  leaveSync() {
    if (this.link) this.link.leave();
    this.link = null;
  }

  /** @param {SyncMode} mode */
  modeChanged(mode) {
    const sel = this.controls.syncSel;
    if (sel.value !== mode) sel.value = mode;
    this.root.dataset.syncMode = mode;
    if (this.model.get("sync_mode") !== mode) {
      try {
        this.model.set("sync_mode", mode);
        this.model.save_changes();
      } catch { /* no kernel */ }
    }
    this.renderControls();
  }

  broadcastStep() {
    const info = this.store.stepsInfo();
    if (this.link && info) this.link.broadcastStep(this.ui.step, info);
  }

  // ------------------------------------------------------------------ interaction
  /** Go to a global step (keys, buttons, strip, menus): pauses playback. @param {number} step */
  seek(step) {
    this.pause();
    this.setStep(step);
  }

  /** @param {number} step */
  setStep(step) {
    if (!this.run || !this.run.steps) return;
    this.ui.step = clamp(step, 0, this.run.steps - 1);
    this.ui.follow = this.ui.step === this.run.steps - 1;
    if (this.link) this.broadcastStep();
    this.render();
  }

  /**
   * The slider moved to `value` (a step, or a stop of the shared axis when synced).
   * @param {number} value
   */
  slide(value) {
    const info = this.store.stepsInfo();
    if (this.link && info) {
      this.ui.step = this.link.fromSlider(value, info);
      this.ui.follow = false;
      this.render();
    } else this.setStep(value);
  }

  play() {
    const info = this.store.stepsInfo();
    if (!this.run || !info) return;
    const started = this.link
      ? this.player.start(this.link.slider(this.ui.step, info).value, this.link.max(),
        (v) => this.slide(v))
      : this.player.start(this.ui.step, this.run.steps - 1, (v) => this.setStep(v));
    if (started) this.renderControls();
  }

  pause() {
    if (!this.player.playing) return;
    this.player.stop();
    this.renderControls();
  }

  /**
   * A token was hovered (click false) or clicked.
   * @param {number | null} pos
   * @param {boolean} click
   */
  point(pos, click) {
    if (click && pos !== null) {
      this.ui.pinned = this.ui.pinned === pos ? null : pos;
      this.sendSelection();
      this.root.focus({ preventScroll: true });
    } else this.ui.hover = pos;
    this.renderInspector();
    this.tokenCanvas.mark(this.ui.pinned);
  }

  sendSelection() {
    // The one piece of view state that goes back to Python: the clicked position (not hover,
    // not the playhead), so `widget.selection` can be read from the kernel.
    const p = this.ui.pinned, run = this.run;
    const value = p === null || !run ? null
      : { step: this.ui.step, canvas: locate(run.bounds, this.ui.step).canvas, position: p };
    try { this.model.set("selection", value); this.model.save_changes(); } catch { /* no kernel */ }
  }

  // ------------------------------------------------------------------ rendering
  render() {
    this.renderStatus();
    const run = this.run;
    if (!run || !run.steps) {
      this.controls.title.textContent = "dgviz \u00b7 canvas timeline";
      this.tokenCanvas.message(run ? "Waiting for the first denoising step\u2026"
        : "No trace loaded.");
      this.inspector.idle();
      return;
    }
    const label = this.model.get("label");
    this.controls.renderHeader(run, label ? String(label) : null, this.store.chunks.size,
      this.note);
    this.renderControls();
    const loc = locate(run.bounds, this.ui.step);
    const chunk = this.store.chunkFor(run, loc.canvas);
    if (!chunk || chunk.n <= loc.local) {
      this.tokenCanvas.message(
        `Loading canvas ${loc.canvas + 1}\u2026 (sent on demand by the kernel)`);
      this.root.dataset.loading = "true";
      this.inspector.idle();
      return;
    }
    delete this.root.dataset.loading;
    const view = this.controls.choices();
    if (this.tokenCanvas.shown !== loc.canvas) this.tokenCanvas.build(run, loc.canvas, chunk);
    this.tokenCanvas.render(run, chunk, loc.local, view);
    this.tokenCanvas.mark(this.ui.pinned);
    this.controls.renderLegend(run, view.colorBy, view.layer);
    if (!this.compact) { // compact: header, controls, legend and canvas only (stacks of 5-8 runs)
      this.renderInspector();
      this.explainer.render(run, chunk, loc, this.ui.step, this.ui.pinned,
        chartWidth(this.widths.get(this.explainer.el) ?? 0, 420));
      this.routing.render(run, chunk, loc, view.layer,
        chartWidth(this.widths.get(this.routing.el) ?? 0, 420));
    }
    this.root.dataset.step = String(this.ui.step);
    this.root.dataset.canvas = String(loc.canvas);
    this.root.dataset.localStep = String(loc.local);
    if (!this.player.playing) this.store.decodeWhenIdle();
  }

  renderStatus() {
    this.controls.renderStatus(this.model.get("status") || "", this.model.get("error") || "");
  }

  renderInspector() {
    const run = this.run;
    if (!run || !run.steps || this.compact) return;
    const pos = this.ui.pinned ?? this.ui.hover;
    const loc = locate(run.bounds, this.ui.step);
    const chunk = this.store.has(loc.canvas) ? this.store.chunkFor(run, loc.canvas) : undefined;
    if (pos === null || !chunk || chunk.n <= loc.local || pos >= chunk.L) this.inspector.idle();
    else {
      this.inspector.show(run, chunk, loc, pos,
        { pinned: this.ui.pinned === pos, mode: this.controls.choices().mode });
    }
    const pinned = this.ui.pinned;
    if (this.branchBar.el.hidden) return;
    if (pinned === null || !chunk || chunk.n <= loc.local || pinned >= chunk.L) {
      this.branchBar.idle();
    } else this.branchBar.show(run, chunk, loc, this.ui.step, pinned);
  }

  /**
   * The step label; `longest` gives the label at the largest numbers (its width is reserved).
   * @param {Run} run @param {number} step @param {boolean} [longest]
   */
  stepLabel(run, step, longest = false) {
    const n = run.steps, C = run.bounds.length;
    const info = this.link ? this.store.stepsInfo() : null;
    const loc = locate(run.bounds, step);
    const count = longest ? Math.max(...run.bounds.map(([lo, hi]) => hi - lo)) : loc.count;
    const at = longest ? count : loc.local + 1;
    const canvas = longest ? C : loc.canvas + 1;
    // transformers counts a canvas's steps down N..1 (this step included), as the plots show it
    const left = longest ? Math.max(...Array.from(run.a.step_remaining))
      : run.a.step_remaining[step];
    let passes = "";
    if (info) {  // a step with a corrector sweep spans two passes: "forward passes 3\u20134/15"
      const first = longest ? info.passes : Math.min(info.before[step] + 1, info.passes);
      const end = step + 1 < info.steps ? info.before[step + 1] : info.passes;
      const range = longest ? info.passes > info.steps : end > first;  // reserve its width
      passes = range
        ? ` \u00b7 forward passes ${first}\u2013${longest ? first : end}/${info.passes}`
        : ` \u00b7 forward pass ${first}/${info.passes}`;
    }
    const s = longest ? n : step + 1;
    return this.compact
      ? `step ${s}/${n}${passes} \u00b7 canvas ${canvas}/${C}`
      : `step ${s}/${n} \u00b7 canvas ${canvas}/${C}, step ${at}/${count} ` +
        `(steps left in the budget: ${left})${passes}`;
  }

  renderControls() {
    const run = this.run;
    this.controls.renderPlaying(this.player.playing);
    this.root.dataset.playing = String(this.player.playing);
    if (!run || !run.steps) return;
    const info = this.store.stepsInfo();
    let slider = { max: Math.max(0, run.steps - 1), value: this.ui.step };
    if (this.link && info) {
      slider = this.link.slider(this.ui.step, info);
      this.root.dataset.syncPosition = String(this.link.position(this.ui.step, info));
    }
    const loc = locate(run.bounds, this.ui.step);
    this.controls.renderPosition(run, loc, this.ui.step, slider, this.stepLabel(run, this.ui.step));
    this.root.dataset.step = String(this.ui.step);
  }
}
