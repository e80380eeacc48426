// @ts-check
// A view's link to its sync group (sync.js): turns the group's shared position into this run's
// step and back, and maps the slider of a synced view onto the group's shared axis.
import { joinGroup } from "./sync.js";
import { clamp, positionOf, stepAt, syncExtent } from "./timeline.js";
/** @import { GroupHandle, Member } from "./sync.js" */
/** @import { StepsInfo, SyncMode } from "./timeline.js" */

/**
 * What the view does for its link.
 * @typedef {object} SyncHost
 * @property {() => StepsInfo | null} info the run's steps (null before the first step)
 * @property {(step: number) => void} show another member moved: show this step
 * @property {(mode: SyncMode) => void} modeChanged the group's mode changed
 * @property {() => void} refresh the shared axis may have changed (redraw the slider)
 */

export class SyncLink {
  /** @param {string} name @param {unknown} mode @param {SyncHost} host */
  constructor(name, mode, host) {
    this.name = name;
    this.host = host;
    /** The shared position last shown (kept so a step that rounds does not drift); null: derive. */
    /** @type {number | null} */
    this.pos = null;
    /** @type {Member} */
    const member = {
      info: () => host.info(),
      onPosition: (position) => this.show(position),
      onMode: (next) => { this.pos = null; host.modeChanged(next); },
      refresh: () => host.refresh(),
    };
    /** @type {GroupHandle} */
    this.group = joinGroup(name, member, mode);
    host.modeChanged(this.group.mode);
    if (this.group.position !== null) this.show(this.group.position);
  }

  /** @returns {SyncMode} */
  get mode() { return this.group.mode; }

  /** @param {number} position */
  show(position) {
    this.pos = position;
    const info = this.host.info();
    if (info) this.host.show(stepAt(position, this.mode, info));
  }

  /**
   * This run's position on the shared axis at `step`.
   * @param {number} step
   * @param {StepsInfo} info
   */
  position(step, info) { return this.pos ?? positionOf(step, this.mode, info); }

  /**
   * The slider on the shared axis: {max, value} at `step`.
   * @param {number} step @param {StepsInfo} info
   */
  slider(step, info) {
    const { max, scale } = syncExtent(this.mode, this.group.infos());
    return { max, value: clamp(Math.round(this.position(step, info) * scale), 0, max) };
  }

  /** The last stop of the shared axis (synced playback plays to it). */
  max() { return syncExtent(this.mode, this.group.infos()).max; }

  /**
   * The slider (or synced playback) moved to stop `value`: tell the others; returns this run's
   * step.
   * @param {number} value @param {StepsInfo} info
   */
  fromSlider(value, info) {
    const { scale } = syncExtent(this.mode, this.group.infos());
    this.pos = value / scale;
    this.group.broadcast(this.pos);
    return stepAt(this.pos, this.mode, info);
  }

  /**
   * This run moved to `step` (keys, buttons): tell the others.
   * @param {number} step
   * @param {StepsInfo} info
   */
  broadcastStep(step, info) {
    this.pos = positionOf(step, this.mode, info);
    this.group.broadcast(this.pos);
  }

  /** Switch the whole group's mode (the members' modeChanged follow). @param {string} mode */
  setMode(mode) { this.group.setMode(mode); }

  leave() { this.group.leave(); }
}
