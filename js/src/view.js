// The timeline view: DOM and canvas drawing. Token text is untrusted model output: it only ever
// reaches the page through textContent / createTextNode / setAttribute (never innerHTML).
import { readChunk, readRun, shownToken, tokenText, history, expertsAt, topExpert, topWeight, formatBytes } from "./data.js";
import { tokenStyle, expertStyle, expertColor, STATE_NAMES, NEW, textColorFor } from "./colors.js";
import { displayText, visible, clip } from "./layout.js";
import { locate, stepBy, jumpCanvas, advance, clamp, fractionToStep, stepsInfo, stepAt, positionOf, syncExtent, SYNC_MODES } from "./timeline.js";
import { joinGroup } from "./sync.js";
import { explainStep, expertLoad } from "./explain.js";

const SPEEDS = [1, 2, 4, 8, 16];
const OWN_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "PageUp", "PageDown", "Home", "End", " ", "Enter", "Escape"]);

/** Create an element. Attributes go through setAttribute; children are nodes or plain text. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(typeof c === "string" ? document.createTextNode(c) : c);
  return el;
}

function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

/** Size a <canvas> for the device pixel ratio; returns its 2D context in CSS pixels. */
function sizeCanvas(canvas, w, h) {
  const dpr = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return ctx;
}

/** Chart width that fits a panel of `width` px (0 when not laid out yet: render can run late). */
function chartWidth(width, max) {
  const inner = width - 18;
  return inner > 0 ? Math.max(160, Math.min(max, inner)) : 320;
}

function fmt(v, digits = 2) { return Number.isFinite(v) ? v.toFixed(digits) : "–"; }

export class TimelineView {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.run = null;
    this.chunks = new Map(); // canvas -> decoded chunk
    this.requested = new Set();
    this.ui = { step: 0, playing: false, speed: 4, colorBy: "state", layer: 0, mode: "canvas", pinned: null, hover: null, follow: true };
    this.shownCanvas = -1;
    this.tokenEls = [];
    this.tokenCache = [];
    this.styles = new Map();
    this.widths = new Map();
    this.raf = 0;
    this.disposers = [];
    this.build();
    const on = (name, fn) => { model.on(name, fn); this.disposers.push(() => model.off(name, fn)); };
    on("change:_run", () => { this.loadRun(); this.render(); });
    on("change:_chunks", () => { this.loadChunks(); this.render(); });
    on("change:_live", () => { this.loadChunks(); this.loadTokens(); this.render(); });
    on("change:_tokens", () => { this.loadTokens(); this.shownCanvas = -1; this.render(); }); // context text too
    on("change:status", () => this.renderStatus());
    on("change:error", () => this.renderStatus());
    on("change:compact", () => { this.applyCompact(); this.render(); });
    on("change:label", () => this.render());
    on("change:sync_mode", () => { // from Python (a member's own change is already the group's mode)
      const mode = this.model.get("sync_mode");
      if (this.sync && mode !== this.sync.mode && SYNC_MODES.includes(mode)) { this.sync.setMode(mode); this.broadcastStep(); }
    });
    on("change:sync", () => { this.leaveSync(); this.joinSync(); this.render(); });
    this.applyCompact();
    this.loadRun(true);
    this.loadChunks();
    this.loadTokens();
    this.joinSync();
    this.render();
  }

  // ------------------------------------------------------------------ synchronized replay
  applyCompact() {
    this.compact = Boolean(this.model.get("compact"));
    this.root.classList.toggle("dgv-compact", this.compact);
    this.root.dataset.compact = String(this.compact);
  }

  joinSync() {
    const name = this.model.get("sync");
    this.sync = null;
    if (typeof name !== "string" || !name) { this.syncSel.style.display = "none"; delete this.root.dataset.sync; return; }
    this.syncMember = {
      info: () => this.syncInfo(),
      onPosition: (position) => this.applyPosition(position),
      onMode: (mode) => this.applyMode(mode),
      refresh: () => { if (this.run && this.run.steps) this.renderControls(); },
    };
    this.sync = joinGroup(name, this.syncMember, this.model.get("sync_mode"));
    this.root.dataset.sync = name;
    this.syncSel.style.display = "";
    this.applyMode(this.sync.mode);
    if (this.sync.position !== null) this.applyPosition(this.sync.position);
  }

  leaveSync() {
    if (this.sync) this.sync.leave();
    this.sync = null;
  }

  /** Forward passes per step of this run (cached per run payload). */
  syncInfo() {
    if (!this.run || !this.run.steps) return null;
    if (!this.stepsInfo || this.stepsInfo.run !== this.run) this.stepsInfo = { run: this.run, info: stepsInfo(this.run.a.active, this.run.steps) };
    return this.stepsInfo.info;
  }

  syncPosition() { return this.syncPos ?? positionOf(this.ui.step, this.sync.mode, this.syncInfo()); }

  extent() { return syncExtent(this.sync.mode, this.sync.infos()); }

  /** Another member moved: show this run's step at the shared position (without re-broadcasting). */
  applyPosition(position) {
    this.pause();
    this.syncPos = position;
    const info = this.syncInfo();
    if (!info) return;
    this.ui.step = stepAt(position, this.sync.mode, info);
    this.ui.follow = false;
    this.render();
  }

  applyMode(mode) {
    if (!SYNC_MODES.includes(mode)) return;
    this.syncPos = null;
    if (this.syncSel.value !== mode) this.syncSel.value = mode;
    this.root.dataset.syncMode = mode;
    if (this.model.get("sync_mode") !== mode) {
      try { this.model.set("sync_mode", mode); this.model.save_changes(); } catch (_) { /* no kernel */ }
    }
    if (this.run && this.run.steps) this.renderControls();
  }

  broadcastStep() {
    if (!this.sync || !this.syncInfo()) return;
    this.syncPos = positionOf(this.ui.step, this.sync.mode, this.syncInfo());
    this.sync.broadcast(this.syncPos);
  }

  /** The slider of a synced view is on the shared axis: value / scale is the position. */
  setSliderValue(value) {
    const { scale } = this.extent();
    const position = value / scale;
    this.syncPos = position;
    this.ui.step = stepAt(position, this.sync.mode, this.syncInfo());
    this.ui.follow = false;
    this.sync.broadcast(position);
    this.render();
  }

  destroy() {
    this.leaveSync();
    cancelAnimationFrame(this.raf);
    clearTimeout(this.idleTimer);
    for (const d of this.disposers) d();
    this.root.remove();
  }

  // ------------------------------------------------------------------ data
  loadRun(initial = false) {
    const prev = this.run;
    this.run = readRun(this.model.get("_run"));
    if (!this.run) return;
    this.run.token_text = this.tokens || {};
    const last = this.run.steps - 1;
    if (initial) this.ui.step = clamp(this.run.initial_step ?? 0, 0, Math.max(0, last));
    // a live run: keep showing the newest step (also on its final update) unless the user scrubbed away
    else if (this.ui.follow && (this.run.info.live || (prev && prev.info.live))) this.ui.step = Math.max(0, last);
    this.ui.step = clamp(this.ui.step, 0, Math.max(0, last));
    if (!prev || prev.shape.layers !== this.run.shape.layers) this.buildLayerOptions();
    this.buildCanvasOptions();
  }

  /** Token text: the table (`_tokens`) plus what the canvas in progress adds (`_live`). */
  loadTokens() {
    const live = this.model.get("_live");
    const extra = live && live.token_text;
    this.tokens = extra ? { ...(this.model.get("_tokens") || {}), ...extra } : (this.model.get("_tokens") || {});
    if (this.run) this.run.token_text = this.tokens;
    this.invalidateTokens();
  }

  loadChunks() {
    if (!this.run) return;
    const all = { ...(this.model.get("_chunks") || {}) };
    const live = this.model.get("_live");
    if (live && live.state) all[String(live.canvas)] = live;
    const keep = new Set();
    for (const [key, raw] of Object.entries(all)) {
      const c = Number(key);
      keep.add(c);
      const have = this.chunks.get(c);
      if (have && have.version === raw.version) continue;
      // decoded when first shown (first paint decodes one canvas, not all of them)
      this.chunks.set(c, { version: raw.version, raw, decoded: null });
      this.requested.delete(c);
      if (c === this.shownCanvas) this.shownCanvas = -1; // force a rebuild of the token spans
    }
    for (const c of [...this.chunks.keys()]) if (!keep.has(c)) this.chunks.delete(c);
  }

  /**
   * Decode the other canvases one at a time in idle moments after a paint, so the first paint
   * decodes only the canvas it shows and scrubbing into another canvas does not stall on it.
   */
  decodeWhenIdle() {
    clearTimeout(this.idleTimer);
    const next = [...this.chunks.entries()].find(([, e]) => !e.decoded);
    if (!next || !this.run) return;
    this.idleTimer = setTimeout(() => {
      const entry = this.chunks.get(next[0]);
      if (entry && !entry.decoded) entry.decoded = readChunk(entry.raw, this.run.length);
      this.decodeWhenIdle();
    }, 30);
  }

  /** The decoded chunk of a canvas, or undefined (then it is asked for, once). */
  chunkFor(canvas) {
    const entry = this.chunks.get(canvas);
    if (entry && !entry.decoded) entry.decoded = readChunk(entry.raw, this.run.length);
    const chunk = entry && entry.decoded;
    if (!chunk && !this.requested.has(canvas)) {
      this.requested.add(canvas);
      this.model.send({ kind: "load", canvas });
    }
    return chunk;
  }

  // ------------------------------------------------------------------ DOM skeleton
  build() {
    const btn = (label, title, fn, cls = "") => h("button", { class: `dgv-btn ${cls}`, title, type: "button", onclick: fn }, label);
    this.title = h("div", { class: "dgv-title" });
    this.facts = h("div", { class: "dgv-facts" });
    this.statusEl = h("div", { class: "dgv-status" });
    this.errorEl = h("div", { class: "dgv-error", role: "alert" });
    this.stopBtn = btn("Stop", "Stop the run (the steps so far are kept)", () => this.model.send({ kind: "stop" }), "dgv-stop");

    this.playBtn = btn("\u25b6 Play", "Play / pause (space)", () => this.togglePlay(), "dgv-play");
    this.slider = h("input", { type: "range", class: "dgv-slider", min: 0, max: 0, step: 1, value: 0, "aria-label": "step" });
    this.slider.addEventListener("input", () => {
      this.pause();
      if (this.sync && this.syncInfo()) this.setSliderValue(Number(this.slider.value));
      else this.setStep(Number(this.slider.value));
    });
    this.syncSel = h("select", { class: "dgv-syncmode", title: "Synchronized runs: align them by the fraction of each run's steps, or by decoder forward passes" },
      h("option", { value: "normalized" }, "sync: fraction of steps"), h("option", { value: "forward_passes" }, "sync: forward passes"));
    this.syncSel.style.display = "none";
    this.syncSel.addEventListener("change", () => {
      if (!this.sync) return;
      this.sync.setMode(this.syncSel.value);
      this.broadcastStep();
    });
    this.stepLabel = h("span", { class: "dgv-steplabel" });
    this.speedSel = h("select", { class: "dgv-speed", title: "Playback speed (steps per second)" },
      ...SPEEDS.map((s) => h("option", { value: s }, `${s} steps/s`)));
    this.speedSel.value = String(this.ui.speed);
    this.speedSel.addEventListener("change", () => { this.ui.speed = Number(this.speedSel.value); });
    this.canvasSel = h("select", { class: "dgv-canvas-select", title: "Canvas" });
    this.canvasSel.addEventListener("change", () => { this.pause(); this.setStep(this.run.bounds[Number(this.canvasSel.value)][0]); });
    this.colorSel = h("select", { class: "dgv-colorby", title: "Colour tokens by" },
      h("option", { value: "state" }, "colour: state"), h("option", { value: "expert" }, "colour: top-1 expert"));
    this.colorSel.addEventListener("change", () => { this.ui.colorBy = this.colorSel.value; this.invalidateTokens(); this.render(); });
    this.layerSel = h("select", { class: "dgv-layer", title: "Decoder MoE layer for routing colours and load" });
    this.layerSel.addEventListener("change", () => { this.ui.layer = Number(this.layerSel.value); this.invalidateTokens(); this.render(); });
    this.modeSel = h("select", { class: "dgv-mode", title: "Which token each position shows" },
      h("option", { value: "canvas" }, "text: canvas"), h("option", { value: "draft" }, "text: argmax draft"));
    this.modeSel.addEventListener("change", () => { this.ui.mode = this.modeSel.value; this.invalidateTokens(); this.render(); });

    const controls = h("div", { class: "dgv-controls" },
      btn("\u00ab canvas", "Previous canvas (Page Up / Shift+\u2190)", () => this.jump(-1), "dgv-canvasjump"),
      btn("\u2039 step", "Previous step (\u2190)", () => this.nudge(-1)),
      this.playBtn,
      btn("step \u203a", "Next step (\u2192)", () => this.nudge(1)),
      btn("canvas \u00bb", "Next canvas (Page Down / Shift+\u2192)", () => this.jump(1), "dgv-canvasjump"),
      this.slider, this.stepLabel);
    const options = h("div", { class: "dgv-options" }, this.speedSel, this.canvasSel, this.modeSel, this.colorSel, this.layerSel);
    this.strip = h("div", { class: "dgv-strip", title: "Global timeline: one segment per canvas (click to jump)" });
    this.strip.addEventListener("click", (e) => {
      const box = this.strip.getBoundingClientRect();
      this.pause();
      this.setStep(fractionToStep((e.clientX - box.left) / box.width, this.run.steps));
    });
    this.legend = h("div", { class: "dgv-legend" });
    this.note = h("div", { class: "dgv-note" });

    this.canvasBox = h("div", { class: "dgv-canvas", "aria-label": "canvas" });
    this.canvasBox.addEventListener("click", (e) => this.onTokenEvent(e, true));
    this.canvasBox.addEventListener("mouseover", (e) => this.onTokenEvent(e, false));
    this.canvasBox.addEventListener("mouseleave", () => { this.ui.hover = null; this.renderInspector(); });
    this.inspector = h("div", { class: "dgv-inspector" });
    this.explainer = h("div", { class: "dgv-explainer" });
    this.routing = h("div", { class: "dgv-routing" });

    this.root = h("div", { class: "dgv-root", tabindex: 0 },
      h("div", { class: "dgv-header" }, this.title, this.statusEl, this.syncSel, this.stopBtn),
      this.facts, this.errorEl, controls, this.strip, options, this.legend,
      h("div", { class: "dgv-main" }, h("div", { class: "dgv-left" }, this.canvasBox, this.note), this.inspector),
      h("div", { class: "dgv-bottom" }, this.explainer, this.routing));
    // JupyterLab and Notebook 7 handle keydown on the document: Lab prevents the arrow keys'
    // default (a focused range input stops moving), Notebook 7 even stops them in the capture
    // phase, so a listener on our own element never sees them. Listen on window in the capture
    // phase (before both) and keep the keys we use to ourselves when the focus is inside the
    // widget; other keys (Shift+Enter, ...) go on to Jupyter.
    const onKeyCapture = (e) => {
      if (!OWN_KEYS.has(e.key) || !(e.target instanceof Node) || !this.root.contains(e.target)) return;
      e.stopPropagation();
      this.onKey(e);
    };
    window.addEventListener("keydown", onKeyCapture, true);
    this.disposers.push(() => window.removeEventListener("keydown", onKeyCapture, true));
    this.el.append(this.root);
  }

  buildLayerOptions() {
    this.layerSel.replaceChildren(...Array.from({ length: this.run.shape.layers }, (_, i) => h("option", { value: i }, `layer ${i}`)));
    this.ui.layer = clamp(this.ui.layer, 0, Math.max(0, this.run.shape.layers - 1));
    this.layerSel.value = String(this.ui.layer);
    const routed = this.run.shape.layers > 0;
    this.layerSel.disabled = !routed;
    this.layerSel.style.display = routed ? "" : "none";
    this.colorSel.querySelector("option[value=expert]").disabled = !routed;
  }

  buildCanvasOptions() {
    const c = this.run.bounds.length;
    if (this.canvasSel.options.length !== c) {
      this.canvasSel.replaceChildren(...Array.from({ length: c }, (_, i) => h("option", { value: i }, `canvas ${i + 1} of ${c}`)));
    }
  }

  /**
   * A panel's width, read once and then kept current by a ResizeObserver: reading clientWidth
   * on every step would force a layout per scrub step (it was half the scrub time).
   */
  panelWidth(panel) {
    if (!this.widths.has(panel)) {
      this.widths.set(panel, panel.clientWidth);
      if (typeof ResizeObserver !== "undefined") {
        if (!this.resizer) {
          this.resizer = new ResizeObserver((entries) => {
            let changed = false;
            for (const e of entries) {
              const w = Math.round(e.contentRect.width + 16); // content box + padding, as clientWidth
              if (this.widths.get(e.target) !== w) { this.widths.set(e.target, w); changed = true; }
            }
            if (changed && this.run && this.run.steps) this.render();
          });
          this.disposers.push(() => this.resizer.disconnect());
        }
        this.resizer.observe(panel);
      }
    }
    return this.widths.get(panel);
  }

  // ------------------------------------------------------------------ interaction
  onKey(e) {
    const t = e.target;
    if (t && (t.tagName === "SELECT" || (t.tagName === "INPUT" && e.key !== " ") || t.tagName === "BUTTON" && (e.key === " " || e.key === "Enter"))) {
      if (!(t.tagName === "INPUT" && e.key.startsWith("Arrow") && e.shiftKey)) return; // native behaviour
    }
    const keys = {
      ArrowRight: () => (e.shiftKey ? this.jump(1) : this.nudge(1)),
      ArrowLeft: () => (e.shiftKey ? this.jump(-1) : this.nudge(-1)),
      PageDown: () => this.jump(1),
      PageUp: () => this.jump(-1),
      Home: () => { this.pause(); this.setStep(0); },
      End: () => { this.pause(); this.setStep(this.run.steps - 1); },
      " ": () => this.togglePlay(),
      Escape: () => { this.ui.pinned = null; this.renderInspector(); this.syncSelection(); },
    };
    const fn = keys[e.key];
    if (fn && this.run) { e.preventDefault(); fn(); }
  }

  onTokenEvent(e, click) {
    const el = e.target.closest ? e.target.closest("[data-pos]") : null;
    if (!el || !this.canvasBox.contains(el)) return;
    const pos = Number(el.dataset.pos);
    if (click) {
      this.ui.pinned = this.ui.pinned === pos ? null : pos;
      this.syncSelection();
      this.root.focus({ preventScroll: true });
    } else this.ui.hover = pos;
    this.renderInspector();
    this.markSelection();
  }

  syncSelection() {
    // The one piece of view state that goes back to Python: the clicked position (not hover,
    // not the playhead), so `widget.selection` can be read from the kernel.
    const p = this.ui.pinned;
    const value = p === null ? null : { step: this.ui.step, canvas: this.loc().canvas, position: p };
    try { this.model.set("selection", value); this.model.save_changes(); } catch (_) { /* no kernel */ }
  }

  loc() { return locate(this.run.bounds, this.ui.step); }

  setStep(step) {
    if (!this.run || !this.run.steps) return;
    this.ui.step = clamp(step, 0, this.run.steps - 1);
    this.ui.follow = this.ui.step === this.run.steps - 1;
    if (this.sync) this.broadcastStep();
    this.render();
  }

  nudge(d) { this.pause(); this.setStep(stepBy(this.ui.step, d, this.run.steps)); }
  jump(d) { this.pause(); this.setStep(jumpCanvas(this.run.bounds, this.ui.step, d)); }

  togglePlay() { if (this.ui.playing) this.pause(); else this.play(); }

  play() {
    if (this.sync && this.syncInfo()) return this.playSynced();
    if (!this.run || this.run.steps < 2) return;
    if (this.ui.step >= this.run.steps - 1) this.setStep(0);
    this.ui.playing = true;
    let last = performance.now(), carry = 0;
    const tick = (now) => {
      if (!this.ui.playing) return;
      const next = advance({ step: this.ui.step, carry }, now - last, this.ui.speed, this.run.steps);
      last = now;
      carry = next.carry;
      if (next.step !== this.ui.step) this.setStep(next.step);
      if (!next.playing) { this.pause(); return; }
      this.raf = requestAnimationFrame(tick);
    };
    this.raf = requestAnimationFrame(tick);
    this.renderControls();
  }

  /** Synced playback moves the shared axis (so the longest run plays to its end). */
  playSynced() {
    const { max, scale } = this.extent();
    if (max < 1) return;
    let value = Math.round(this.syncPosition() * scale);
    if (value >= max) { value = 0; this.setSliderValue(0); }
    this.ui.playing = true;
    let last = performance.now(), carry = 0;
    const tick = (now) => {
      if (!this.ui.playing) return;
      const next = advance({ step: value, carry }, now - last, this.ui.speed, max + 1);
      last = now;
      carry = next.carry;
      if (next.step !== value) { value = next.step; this.setSliderValue(value); }
      if (!next.playing) { this.pause(); return; }
      this.raf = requestAnimationFrame(tick);
    };
    this.raf = requestAnimationFrame(tick);
    this.renderControls();
  }

  pause() {
    if (!this.ui.playing) return;
    this.ui.playing = false;
    cancelAnimationFrame(this.raf);
    this.renderControls();
  }

  // ------------------------------------------------------------------ rendering
  render() {
    this.renderStatus();
    if (!this.run || !this.run.steps) {
      setText(this.title, "dgviz \u00b7 canvas timeline");
      this.canvasBox.replaceChildren(h("div", { class: "dgv-empty" }, this.run ? "Waiting for the first denoising step\u2026" : "No trace loaded."));
      return;
    }
    this.renderHeader();
    this.renderControls();
    const loc = this.loc();
    const chunk = this.chunkFor(loc.canvas);
    if (!chunk || chunk.n <= loc.local) {
      this.shownCanvas = -1;
      this.canvasBox.replaceChildren(h("div", { class: "dgv-empty" }, `Loading canvas ${loc.canvas + 1}\u2026 (sent on demand by the kernel)`));
      this.root.dataset.loading = "true";
      return;
    }
    delete this.root.dataset.loading;
    if (this.shownCanvas !== loc.canvas) this.buildCanvas(loc.canvas, chunk);
    this.renderTokens(chunk, loc.local);
    this.renderLegend();
    if (!this.compact) { // compact: header, canvas and legend only (stacks of 5-8 runs)
      this.renderInspector();
      this.renderExplainer(chunk, loc);
      this.renderRouting(chunk, loc);
    }
    this.root.dataset.step = String(this.ui.step);
    this.root.dataset.canvas = String(loc.canvas);
    this.root.dataset.localStep = String(loc.local);
    if (!this.ui.playing) this.decodeWhenIdle();
  }

  renderStatus() {
    const status = this.model.get("status") || "";
    const error = this.model.get("error") || "";
    setText(this.statusEl, status);
    this.statusEl.dataset.status = status.split(/[\s:]/)[0] || "";
    setText(this.errorEl, error);
    this.errorEl.style.display = error ? "" : "none";
    this.stopBtn.style.display = status.startsWith("running") ? "" : "none";
  }

  renderHeader() {
    const info = this.run.info;
    const prompt = (info.prompt_text || "").replace(/\s+/g, " ").trim();
    const label = this.model.get("label");
    setText(this.title, label ? clip(String(label), 120) : `dgviz \u00b7 ${clip(prompt || "canvas timeline", 70)}`);
    this.title.title = label ? String(label) : prompt;
    const s = info.settings || {};
    const bits = [info.model_name, s.sampler, Number.isFinite(s.entropy_bound) ? `entropy bound ${s.entropy_bound}` : null,
      `${this.run.bounds.length} canvas(es) \u00d7 ${this.run.length} positions`, `${this.run.steps} steps`,
      info.batch_size > 1 ? `row ${info.row} of ${info.batch_size}` : null, info.complete === false && !info.live ? "INCOMPLETE run" : null];
    setText(this.facts, bits.filter(Boolean).join(" \u00b7 "));
    const t = this.run.transport;
    const note = t.offline
      ? `Offline replay: all ${this.run.bounds.length} canvas(es) embedded in this file (${formatBytes(t.total_bytes)}${t.routing ? "" : ", routing left out"}).`
      : t.mode === "all"
      ? `All ${this.run.bounds.length} canvas(es) sent to the browser (${formatBytes(t.total_bytes)}${t.routing ? "" : ", routing left out"}).`
      : `Large trace (${formatBytes(t.total_bytes)}): the browser holds at most ${formatBytes(t.cap_bytes)}, so canvases are sent on demand (${this.chunks.size} of ${this.run.bounds.length} loaded)${t.routing ? "" : "; routing left out"}.`;
    setText(this.note, note);
  }

  renderControls() {
    const n = this.run ? this.run.steps : 0;
    const synced = Boolean(this.sync && this.syncInfo());
    let max = Math.max(0, n - 1), value = this.ui.step;
    if (synced) { // the slider shows the shared axis
      const ext = this.extent();
      max = ext.max;
      value = clamp(Math.round(this.syncPosition() * ext.scale), 0, max);
      this.root.dataset.syncPosition = String(this.syncPosition());
    }
    if (this.slider.max !== String(max)) this.slider.max = String(max);
    if (this.slider.value !== String(value)) this.slider.value = String(value);
    setText(this.playBtn, this.ui.playing ? "\u23f8 Pause" : "\u25b6 Play");
    this.root.dataset.playing = String(this.ui.playing);
    if (!n) return;
    const loc = this.loc();
    // transformers counts a canvas's steps down N..1 (this step included), as the plots show it
    const left = this.run.a.step_remaining[this.ui.step];
    const info = synced ? this.syncInfo() : null;
    const passes = info ? ` \u00b7 forward pass ${Math.min(info.before[this.ui.step] + 1, info.passes)}/${info.passes}` : "";
    setText(this.stepLabel, this.compact
      ? `step ${this.ui.step + 1}/${n}${passes} \u00b7 canvas ${loc.canvas + 1}/${this.run.bounds.length}`
      : `step ${this.ui.step + 1}/${n} \u00b7 canvas ${loc.canvas + 1}/${this.run.bounds.length}, step ${loc.local + 1}/${loc.count} (steps left in the budget: ${left})${passes}`);
    this.root.dataset.step = String(this.ui.step);
    if (this.canvasSel.value !== String(loc.canvas)) this.canvasSel.value = String(loc.canvas);
    this.renderStrip(loc);
  }

  renderStrip(loc) {
    const n = this.run.steps;
    if (this.strip.childElementCount !== this.run.bounds.length + 1 || this.strip.dataset.n !== String(n)) {
      this.strip.dataset.n = String(n);
      this.playhead = h("div", { class: "dgv-playhead" });
      this.strip.replaceChildren(...this.run.bounds.map(([lo, hi], c) =>
        h("div", { class: "dgv-seg", style: `flex: ${hi - lo} 0 0`, "data-canvas": c }, `canvas ${c + 1}`)), this.playhead);
    }
    [...this.strip.children].forEach((seg, c) => seg.classList && seg.classList.toggle("dgv-seg-on", c === loc.canvas));
    this.playhead.style.left = `${((this.ui.step + 0.5) / n) * 100}%`;
  }

  invalidateTokens() { this.tokenCache = this.tokenEls.map(() => ({ text: null, bg: null })); }

  buildCanvas(canvas, chunk) {
    this.shownCanvas = canvas;
    const run = this.run;
    const ctx = h("span", { class: "dgv-context", title: "Context: the prompt and earlier canvases (final text)" });
    const prompt = run.a.prompt_ids;
    const pad = run.info.pad_token_id;
    for (let i = 0; i < prompt.length; i++) {
      if (prompt[i] === pad) continue;
      ctx.append(document.createTextNode(displayText(tokenText(run, prompt[i]))));
    }
    for (let c = 0; c < canvas; c++) {
      ctx.append(h("span", { class: "dgv-sep", title: `canvas ${c + 1}` }, `\u2502${c + 1}\u2502`));
      const L = run.length;
      let text = "";
      for (let p = 0; p < L; p++) text += displayText(tokenText(run, run.a.final_tokens[c * L + p]));
      ctx.append(document.createTextNode(text));
    }
    ctx.append(h("span", { class: "dgv-sep dgv-sep-now", title: `canvas ${canvas + 1} (this one)` }, `\u2502${canvas + 1}\u2502`));
    const L = chunk.L;
    this.tokenEls = new Array(L);
    const frag = document.createDocumentFragment();
    for (let p = 0; p < L; p++) {
      const span = h("span", { class: "dgv-tok", "data-pos": p });
      this.tokenEls[p] = span;
      frag.append(span);
    }
    this.canvasBox.replaceChildren(ctx, frag);
    this.invalidateTokens();
    // keep the current canvas in view when the context is long
    this.canvasBox.scrollTop = Math.max(0, this.tokenEls[0].offsetTop - this.canvasBox.offsetTop - 48);
  }

  renderTokens(chunk, local) {
    const run = this.run, pal = run.palette, L = chunk.L;
    const byExpert = this.ui.colorBy === "expert" && chunk.expert_ids;
    for (let p = 0; p < L; p++) {
      const i = local * L + p;
      const id = shownToken(chunk, local, p, this.ui.mode);
      const state = chunk.state[i];
      const style = byExpert
        ? this.styleOf(1, topExpert(chunk, local, this.ui.layer, p), topWeight(chunk, local, this.ui.layer, p))
        : this.styleOf(0, state, chunk.confidence[i]);
      const cache = this.tokenCache[p];
      const el = this.tokenEls[p];
      if (cache.id !== id) {
        cache.id = id;
        const raw = tokenText(run, id);
        el.textContent = displayText(raw);
        el.title = `${visible(raw)} \u00b7 position ${p}`;
      }
      if (cache.bg !== style.bg || cache.fg !== style.fg) {
        cache.bg = style.bg; cache.fg = style.fg;
        el.style.backgroundColor = style.bg;
        el.style.color = style.fg;
      }
      if (cache.state !== state) { cache.state = state; el.dataset.state = String(state); }
    }
    this.markSelection();
  }

  /** Token colours, memoised on (kind, state or expert, value quantised to 1/64). */
  styleOf(kind, key, value) {
    const q = Number.isFinite(value) ? Math.round(Math.max(0, Math.min(1, value)) * 64) : -1;
    const id = (kind * 100000 + key + 1) * 100 + q + 1;
    let st = this.styles.get(id);
    if (!st) {
      const v = q < 0 ? NaN : q / 64;
      st = kind ? expertStyle(key, v, this.run.palette) : tokenStyle(key, v, this.run.palette);
      this.styles.set(id, st);
    }
    return st;
  }

  markSelection() {
    const sel = this.ui.pinned;
    if (this.markedEl) this.markedEl.classList.remove("dgv-pinned");
    this.markedEl = sel !== null && this.tokenEls[sel] ? this.tokenEls[sel] : null;
    if (this.markedEl) this.markedEl.classList.add("dgv-pinned");
  }

  renderLegend() {
    const pal = this.run.palette;
    const key = `${this.ui.colorBy}:${this.ui.layer}`;
    if (this.legend.dataset.key === key) return;
    this.legend.dataset.key = key;
    if (this.ui.colorBy === "expert") {
      const E = this.run.shape.experts;
      this.legend.replaceChildren(h("span", { class: "dgv-legend-title" }, `Top-1 expert, layer ${this.ui.layer} (intensity = router weight):`),
        ...Array.from({ length: E }, (_, e) => {
          const bg = expertColor(e, pal);
          return h("span", { class: "dgv-chip", style: `background:${bg};color:${textColorFor(bg)}` }, `e${e}`);
        }),
        ...(E > pal.experts.length ? [h("span", { class: "dgv-legend-note" }, `(${E} experts share ${pal.experts.length} colours; hover shows ids)`)] : []));
      return;
    }
    const chips = STATE_NAMES.map((name, s) => {
      const st = tokenStyle(s, 1, pal);
      return h("span", { class: "dgv-chip", style: `background:${st.bg};color:${st.fg}`, "data-state": s }, name);
    });
    const ramp = h("span", { class: "dgv-ramp", title: "Colour intensity follows the token's confidence" },
      ...[0, 0.5, 1].map((c) => { const st = tokenStyle(NEW, c, pal); return h("span", { style: `background:${st.bg};color:${st.fg}` }, c.toFixed(1)); }));
    this.legend.replaceChildren(h("span", { class: "dgv-legend-title" }, "State:"), ...chips, h("span", { class: "dgv-legend-title" }, "confidence \u2192 intensity"), ramp);
  }

  // ------------------------------------------------------------------ inspector
  renderInspector() {
    if (!this.run || !this.run.steps || this.compact) return;
    const pos = this.ui.pinned ?? this.ui.hover;
    const loc = this.loc();
    const chunk = this.chunks.has(loc.canvas) ? this.chunkFor(loc.canvas) : undefined;
    if (pos === null || !chunk || chunk.n <= loc.local) {
      this.inspector.dataset.position = "";
      this.inspector.replaceChildren(h("div", { class: "dgv-hint" },
        "Hover a token to inspect it, click to pin it. Keys: \u2190 \u2192 step, Shift+\u2190 \u2192 or PgUp/PgDn canvas, space play/pause, Esc unpin."));
      return;
    }
    const run = this.run, L = chunk.L, local = loc.local, i = local * L + pos;
    const state = chunk.state[i];
    const text = (id) => visible(tokenText(run, id));
    const st = tokenStyle(state, chunk.confidence[i], run.palette);
    const parts = [];
    parts.push(h("div", { class: "dgv-insp-head" },
      h("span", { class: "dgv-chip dgv-insp-token", style: `background:${st.bg};color:${st.fg}` }, clip(text(shownToken(chunk, local, pos, this.ui.mode)), 40)),
      ` position ${pos} \u00b7 ${STATE_NAMES[state]}${this.ui.pinned === pos ? " \u00b7 pinned" : ""}`));
    parts.push(h("div", { class: "dgv-kv" },
      `confidence ${fmt(chunk.confidence[i], 3)} \u00b7 entropy ${fmt(chunk.entropy[i], 3)} nats`));
    parts.push(h("div", { class: "dgv-kv" }, `read `, h("code", {}, clip(text(chunk.canvas_in[i]), 20)),
      ` sampled `, h("code", {}, clip(text(chunk.sampled[i]), 20)), ` draft `, h("code", {}, clip(text(chunk.draft[i]), 20)),
      ` final `, h("code", {}, clip(text(run.a.final_tokens[loc.canvas * L + pos]), 20))));

    // top-k alternatives
    const K = chunk.K;
    const rows = [];
    for (let j = 0; j < K; j++) {
      const id = chunk.topk_ids[i * K + j], p = chunk.topk_probs[i * K + j];
      rows.push(h("div", { class: "dgv-alt", "data-rank": j },
        h("span", { class: "dgv-alt-tok" }, clip(text(id), 18)),
        h("span", { class: "dgv-bar" }, h("span", { class: "dgv-bar-fill", style: `width:${(clamp(p, 0, 1) * 100).toFixed(1)}%` })),
        h("span", { class: "dgv-alt-p" }, fmt(p, 3))));
    }
    parts.push(h("div", { class: "dgv-sub" }, `Top-${K} alternatives at this step`), h("div", { class: "dgv-alts" }, ...rows));

    // history
    const lock = run.a.lock_in[loc.canvas * L + pos];
    const first = run.a.first_accepted[loc.canvas * L + pos];
    const flips = run.a.flips[loc.canvas * L + pos];
    const lockLocal = lock >= 0 && lock < loc.hi ? lock - loc.lo : -1;
    parts.push(h("div", { class: "dgv-sub" }, "History over this canvas's steps"));
    parts.push(this.sparkline("confidence", history(chunk, "confidence", pos), local, lockLocal, [0, 1]));
    parts.push(this.sparkline("entropy", history(chunk, "entropy", pos), local, lockLocal, null));
    parts.push(h("div", { class: "dgv-kv" },
      `draft flips ${flips} \u00b7 lock-in ${lock >= 0 && lockLocal >= 0 ? `step ${lockLocal + 1} of canvas` : "not yet"} \u00b7 first accepted ${first >= 0 ? `step ${first - loc.lo + 1}` : "never"}`));

    // experts
    if (chunk.expert_ids) {
      const ex = expertsAt(chunk, local, pos);
      parts.push(h("div", { class: "dgv-sub" }, "Experts per decoder layer at this step"));
      parts.push(h("div", { class: "dgv-experts" }, ...ex.map(({ layer, picks, entropy }) => h("div", { class: "dgv-exrow" },
        h("span", { class: "dgv-exlayer" }, `L${layer}`),
        ...picks.map(({ expert, weight }) => {
          const bg = expertColor(expert, run.palette);
          return h("span", { class: "dgv-chip", style: `background:${bg};color:${textColorFor(bg)}`, title: `expert ${expert}, weight ${fmt(weight, 3)}` }, `e${expert} ${fmt(weight, 2)}`);
        }),
        h("span", { class: "dgv-exent" }, `H ${fmt(entropy, 2)}`)))));
      parts.push(h("div", { class: "dgv-sub" }, "Top-1 expert path (layers \u00d7 steps, noise \u2192 final)"));
      parts.push(this.expertPath(chunk, pos, local));
    }
    this.inspector.dataset.position = String(pos);
    this.inspector.replaceChildren(...parts);
  }

  /** The inspector is rebuilt at every step; its <canvas> elements are kept (cheaper than new ones). */
  reusedCanvas(key, attrs) {
    this.canvases = this.canvases || new Map();
    if (!this.canvases.has(key)) this.canvases.set(key, h("canvas", attrs));
    return this.canvases.get(key);
  }

  sparkline(label, values, current, lockLocal, range) {
    const w = 150, hgt = 30;
    const canvas = this.reusedCanvas(`spark-${label}`, { class: "dgv-spark", "aria-label": `${label} over steps` });
    const ctx = sizeCanvas(canvas, w, hgt);
    let lo = range ? range[0] : Infinity, hi = range ? range[1] : -Infinity;
    if (!range) for (const v of values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (!(hi > lo)) { hi = lo + 1; }
    const n = values.length;
    const x = (s) => (n > 1 ? 4 + (s / (n - 1)) * (w - 8) : w / 2);
    const y = (v) => hgt - 4 - ((v - lo) / (hi - lo)) * (hgt - 8);
    if (lockLocal >= 0) {
      ctx.fillStyle = "rgba(0,158,115,0.15)";
      ctx.fillRect(x(lockLocal), 0, w - x(lockLocal), hgt);
    }
    ctx.strokeStyle = "#999"; ctx.beginPath(); ctx.moveTo(x(current), 0); ctx.lineTo(x(current), hgt); ctx.stroke();
    ctx.strokeStyle = label === "entropy" ? "#B63679" : "#0072B2"; ctx.lineWidth = 1.5; ctx.beginPath();
    values.forEach((v, s) => (s ? ctx.lineTo(x(s), y(v)) : ctx.moveTo(x(s), y(v))));
    ctx.stroke();
    ctx.fillStyle = "#000"; ctx.beginPath(); ctx.arc(x(current), y(values[current]), 2.5, 0, 2 * Math.PI); ctx.fill();
    return h("div", { class: "dgv-sparkrow" }, h("span", { class: "dgv-sparklabel" }, label), canvas,
      h("span", { class: "dgv-sparkval" }, `${fmt(values[current], 2)}`));
  }

  expertPath(chunk, pos, local) {
    const { layers, n } = chunk;
    const cell = Math.max(3, Math.min(12, Math.floor(260 / n)));
    const w = n * cell, hgt = layers * 9;
    const canvas = this.reusedCanvas("path", { class: "dgv-path", title: "Rows: layers 0..N-1, columns: this canvas's steps; colour: top-1 expert" });
    const ctx = sizeCanvas(canvas, w + 2, hgt + 2);
    for (let s = 0; s < n; s++) for (let l = 0; l < layers; l++) {
      ctx.fillStyle = expertColor(topExpert(chunk, s, l, pos), this.run.palette);
      ctx.fillRect(1 + s * cell, 1 + l * 9, cell - 1, 8);
    }
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5; ctx.strokeRect(1 + local * cell - 0.5, 0.5, cell, hgt + 1);
    return canvas;
  }

  // ------------------------------------------------------------------ sampler explainer
  renderExplainer(chunk, loc) {
    const run = this.run, L = chunk.L, local = loc.local, step = this.ui.step;
    const s = run.info.settings || {};
    const bound = Number.isFinite(s.entropy_bound) ? s.entropy_bound : NaN;
    const ent = chunk.entropy.subarray(local * L, (local + 1) * L);
    const acc = chunk.accepted ? chunk.accepted.subarray(local * L, (local + 1) * L) : chunk.state.subarray(local * L, (local + 1) * L).map((v) => (v === 1 || v === 2 ? 1 : 0));
    const ex = explainStep(ent, acc, bound);
    if (!this.exCanvas) {
      this.exCanvas = h("canvas", { class: "dgv-exchart", title: "Click a bar to inspect that position" });
      this.exCanvas.addEventListener("click", (e) => {
        const box = this.exCanvas.getBoundingClientRect();
        const j = Math.floor(((e.clientX - box.left) / box.width) * this.exOrder.length);
        if (j >= 0 && j < this.exOrder.length) { this.ui.pinned = this.exOrder[j]; this.syncSelection(); this.renderInspector(); this.markSelection(); }
      });
      this.exText = h("div", { class: "dgv-kv" });
      this.exStop = h("div", { class: "dgv-kv" });
      this.explainer.replaceChildren(h("div", { class: "dgv-sub" }, "Sampler at this step"), this.exText, this.exCanvas,
        h("div", { class: "dgv-legend-small" }, "bars: entropy of each position, lowest first; orange band: accepted \u00b7 line: \u03a3 entropy \u2212 max \u00b7 dashed: bound"), this.exStop);
    }
    this.exOrder = ex.order;
    const temp = run.a.temperature[step];
    setText(this.exText, `${s.sampler || "sampler"}: accepted ${ex.nAccepted} of ${L} \u00b7 ${Number.isFinite(bound) ? `${ex.withinBound} lowest-entropy positions satisfy \u03a3H \u2212 max H \u2264 bound ${bound}` : "no entropy bound recorded"} \u00b7 temperature ${fmt(temp, 3)}`);
    const stop = run.a.stop[step];
    const active = run.a.active[step];
    setText(this.exStop, `Stop criterion: ${stop ? "fired after this step (canvas done)" : "not fired"}${active ? "" : " \u00b7 row already finished"} \u00b7 steps left in the budget: ${run.a.step_remaining[step]} of ${s.max_denoising_steps ?? "?"}, this one included \u00b7 stability threshold ${s.stability_threshold ?? "\u2013"} \u00b7 confidence threshold ${s.confidence_threshold ?? "\u2013"}`);
    const w = chartWidth(this.panelWidth(this.explainer), 420), hgt = 120;
    const ctx = sizeCanvas(this.exCanvas, w, hgt);
    let max = 1e-9;
    for (let j = 0; j < L; j++) max = Math.max(max, ex.sorted[j]);
    const bw = w / L;
    const base = hgt - 7; // a 5 px band under the bars marks accepted positions (near-zero bars vanish)
    const yE = (v) => base - (v / max) * (base - 14);
    for (const accepted of [0, 1]) { // one path per colour: setting fillStyle per bar is slow
      ctx.fillStyle = accepted ? run.palette.states[NEW] : "#C8C8C8";
      ctx.beginPath();
      for (let j = 0; j < L; j++) {
        if (ex.acceptedSorted[j] !== accepted) continue;
        const y = yE(ex.sorted[j]);
        const x = j * bw + (bw > 3 ? 0.5 : 0), bwi = Math.max(1, bw - (bw > 3 ? 1 : 0));
        ctx.rect(x, y, bwi, base - y);
        ctx.rect(x, hgt - 5, bwi, 5);
      }
      ctx.fill();
    }
    // criterion (sum - max) on its own scale, clipped to 3x bound so the bound stays visible
    const cMax = Number.isFinite(bound) && bound > 0 ? Math.max(bound * 3, 1e-9) : Math.max(ex.criterion[L - 1], 1e-9);
    const yC = (v) => base - (Math.min(v, cMax) / cMax) * (base - 14);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5; ctx.beginPath();
    for (let j = 0; j < L; j++) { const x = (j + 0.5) * bw; if (j) ctx.lineTo(x, yC(ex.criterion[j])); else ctx.moveTo(x, yC(ex.criterion[j])); }
    ctx.stroke();
    if (Number.isFinite(bound)) {
      ctx.setLineDash([4, 3]); ctx.strokeStyle = "#D55E00"; ctx.beginPath(); ctx.moveTo(0, yC(bound)); ctx.lineTo(w, yC(bound)); ctx.stroke(); ctx.setLineDash([]);
    }
    ctx.font = "10px sans-serif"; ctx.fillStyle = "#555"; ctx.textAlign = "left";
    ctx.fillText(`entropy (max ${fmt(max, 2)} nats)`, 3, 9);
    ctx.textAlign = "right";
    ctx.fillText(Number.isFinite(bound) ? `\u03a3H\u2212max, clipped at 3\u00d7 bound` : "\u03a3H\u2212max", w - 3, 9);
    if (this.ui.pinned !== null) {
      const j = ex.order.indexOf(this.ui.pinned);
      ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.strokeRect(j * bw + 0.5, 0.5, Math.max(1, bw - 1), hgt - 1);
    }
  }

  // ------------------------------------------------------------------ routing
  renderRouting(chunk, loc) {
    const run = this.run;
    if (!chunk.expert_ids) {
      this.routing.replaceChildren(h("div", { class: "dgv-sub" }, "Routing"), h("div", { class: "dgv-hint" }, "No routing in this trace (record with routing=True, or it was left out to fit the payload cap)."));
      return;
    }
    const E = run.shape.experts, L = chunk.L, k = chunk.k, layers = chunk.layers;
    if (!this.loadCanvas) {
      this.loadCanvas = h("canvas", { class: "dgv-load" });
      this.loadText = h("div", { class: "dgv-sub" });
      this.loadHint = h("div", { class: "dgv-legend-small" }, "tokens routed to each expert (all top-k slots); choose \"colour: top-1 expert\" to colour the canvas by expert");
      this.routing.replaceChildren(this.loadText, this.loadCanvas, this.loadHint);
    }
    const layer = clamp(this.ui.layer, 0, layers - 1);
    setText(this.loadText, `Expert load at this step, layer ${layer} (top-${k} of ${E})`);
    const ids = chunk.expert_ids.subarray(loc.local * layers * L * k, (loc.local + 1) * layers * L * k);
    const counts = expertLoad(ids, layer, L, k, E);
    const w = chartWidth(this.panelWidth(this.routing), 420), hgt = 110;
    const ctx = sizeCanvas(this.loadCanvas, w, hgt);
    const max = Math.max(1, ...counts);
    const bw = w / E;
    ctx.font = "9px sans-serif"; ctx.textAlign = "center";
    for (let e = 0; e < E; e++) {
      const bh = (counts[e] / max) * (hgt - 24);
      ctx.fillStyle = expertColor(e, run.palette);
      ctx.fillRect(e * bw + 1, hgt - 12 - bh, Math.max(1, bw - 2), bh);
      if (bw >= 14) { ctx.fillStyle = "#333"; ctx.fillText(`e${e}`, (e + 0.5) * bw, hgt - 2); if (counts[e]) ctx.fillText(String(counts[e]), (e + 0.5) * bw, hgt - 14 - bh); }
    }
  }
}

