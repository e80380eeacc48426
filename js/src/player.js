// @ts-check
// Playback: one animation-frame loop that moves a value along an axis of stops 0..max at
// `speed` stops per second. A plain view plays its own steps; a synced view plays the group's
// shared axis (so the longest run plays to its end). Either way it is this loop.
import { advance } from "./timeline.js";

export class Player {
  /**
   * @param {() => number} speed stops per second, read at every frame
   * @param {() => void} onEnd called when playback reaches the last stop
   */
  constructor(speed, onEnd) {
    this.speed = speed;
    this.onEnd = onEnd;
    this.raf = 0;
    this.playing = false;
  }

  /**
   * Play from `value` (from 0 when already at the end); `set(v)` shows stop v.
   * @param {number} value @param {number} max @param {(v: number) => void} set
   * @returns {boolean} whether it started (an axis of one stop has nothing to play)
   */
  start(value, max, set) {
    if (max < 1) return false;
    this.stop();
    if (value >= max) { value = 0; set(0); }
    this.playing = true;
    let last = performance.now(), carry = 0;
    /** @param {number} now */
    const tick = (now) => {
      if (!this.playing) return;
      const next = advance({ step: value, carry }, now - last, this.speed(), max + 1);
      last = now;
      carry = next.carry;
      if (next.step !== value) { value = next.step; set(value); }
      if (!next.playing) { this.stop(); this.onEnd(); return; }
      this.raf = requestAnimationFrame(tick);
    };
    this.raf = requestAnimationFrame(tick);
    return true;
  }

  stop() {
    this.playing = false;
    cancelAnimationFrame(this.raf);
  }
}
