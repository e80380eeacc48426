// @ts-check
// What the view shows, read from the model: the run (`_run`), the canvas chunks (`_chunks`, and
// `_live` for the canvas in progress) and the token text (`_tokens`, plus what `_live` adds).
// A chunk is decoded when it is first shown; the others in idle moments after a paint.
import { readChunk, readRun } from "./data.js";
import { stepsInfo } from "./timeline.js";
/** @import { Chunk, ChunkPayload, Model, Run } from "./types.js" */
/** @import { StepsInfo } from "./timeline.js" */

/** @typedef {{version: number, raw: ChunkPayload, decoded: Chunk | null}} ChunkEntry */

export class RunStore {
  /** @param {Model} model */
  constructor(model) {
    this.model = model;
    /** @type {Run | null} */
    this.run = null;
    /** @type {Map<number, ChunkEntry>} canvas -> its chunk */
    this.chunks = new Map();
    /** @type {Set<number>} canvases asked for (on-demand transport) */
    this.requested = new Set();
    /** @type {Record<string, string>} */
    this.tokens = {};
    /** @type {{run: Run, info: StepsInfo} | null} */
    this.infoCache = null;
    this.idleTimer = 0;
  }

  /** Read `_run`; returns the run it replaced. */
  loadRun() {
    const prev = this.run;
    this.run = readRun(this.model.get("_run"), this.tokens);
    return prev;
  }

  /** Token text: the table (`_tokens`) plus what the canvas in progress adds (`_live`). */
  loadTokens() {
    const live = this.model.get("_live");
    const extra = live && live.token_text;
    const table = this.model.get("_tokens") || {};
    this.tokens = extra ? { ...table, ...extra } : table;
    if (this.run) this.run.token_text = this.tokens;
  }

  /** Read `_chunks` and `_live`; returns the canvases whose data changed. */
  loadChunks() {
    /** @type {Set<number>} */
    const changed = new Set();
    if (!this.run) return changed;
    /** @type {Record<string, ChunkPayload>} */
    const all = { ...(this.model.get("_chunks") || {}) };
    const live = this.model.get("_live");
    if (live && live.state) all[String(live.canvas)] = live;
    const keep = new Set();
    for (const [key, raw] of Object.entries(all)) {
      const c = Number(key);
      keep.add(c);
      const have = this.chunks.get(c);
      if (have && have.version === raw.version) continue;
      this.chunks.set(c, { version: raw.version, raw, decoded: null });
      this.requested.delete(c);
      changed.add(c);
    }
    for (const c of [...this.chunks.keys()]) if (!keep.has(c)) this.chunks.delete(c);
    return changed;
  }

  /** Whether a canvas's data is in the browser. @param {number} canvas */
  has(canvas) { return this.chunks.has(canvas); }

  /**
   * The decoded chunk of a canvas, or undefined (then it is asked for from the kernel, once).
   * @param {Run} run @param {number} canvas
   */
  chunkFor(run, canvas) {
    const entry = this.chunks.get(canvas);
    if (entry && !entry.decoded) entry.decoded = readChunk(entry.raw, run.length);
    const chunk = entry && entry.decoded;
    if (!chunk && !this.requested.has(canvas)) {
      this.requested.add(canvas);
      this.model.send({ kind: "load", canvas });
    }
    return chunk || undefined;
  }

  /**
   * Decode the other canvases one at a time in idle moments after a paint, so the first paint
   * decodes only the canvas it shows and scrubbing into another canvas does not stall on it.
   */
  decodeWhenIdle() {
    clearTimeout(this.idleTimer);
    const next = [...this.chunks.entries()].find(([, e]) => !e.decoded);
    const run = this.run;
    if (!next || !run) return;
    this.idleTimer = setTimeout(() => {
      const entry = this.chunks.get(next[0]);
      if (entry && !entry.decoded) entry.decoded = readChunk(entry.raw, run.length);
      this.decodeWhenIdle();
    }, 30);
  }

  /** The run's forward passes per step (cached per run payload); null before the first step. */
  stepsInfo() {
    const run = this.run;
    if (!run || !run.steps) return null;
    if (!this.infoCache || this.infoCache.run !== run) {
      this.infoCache = { run, info: stepsInfo(run.a.passes, run.steps) };
    }
    return this.infoCache.info;
  }

  dispose() { clearTimeout(this.idleTimer); }
}
