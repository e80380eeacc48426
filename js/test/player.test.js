import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Player } from "../src/player.js";
import { canvasLines } from "../src/tokens.js";

describe("Player (the one playback loop)", () => {
  let frames, now;
  beforeEach(() => {
    frames = [];
    now = 0;
    vi.stubGlobal("requestAnimationFrame", (fn) => frames.push(fn));
    vi.stubGlobal("cancelAnimationFrame", () => { frames = []; });
    vi.spyOn(performance, "now").mockImplementation(() => now);
  });
  afterEach(() => { vi.unstubAllGlobals(); vi.restoreAllMocks(); });

  /** Run animation frames `dt` ms apart until none is asked for. */
  const run = (dt) => {
    for (let i = 0; i < 1000 && frames.length; i++) {
      now += dt;
      const fn = frames.shift();
      fn(now);
    }
  };

  it("plays from the value to the last stop at `speed` stops per second, then ends", () => {
    const shown = [], ended = [];
    const p = new Player(() => 10, () => ended.push(true));
    expect(p.start(2, 5, (v) => shown.push(v))).toBe(true);
    expect(p.playing).toBe(true);
    run(100); // one stop per frame at 10 stops/s
    expect(shown).toEqual([3, 4, 5]);
    expect(ended).toEqual([true]);
    expect(p.playing).toBe(false);
  });

  it("starts over from 0 when it is at the end", () => {
    const shown = [];
    const p = new Player(() => 20, () => {});
    p.start(5, 5, (v) => shown.push(v));
    run(50);
    expect(shown).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it("has nothing to play on an axis of one stop, and stops when told", () => {
    const p = new Player(() => 4, () => {});
    expect(p.start(0, 0, () => {})).toBe(false);
    const shown = [];
    p.start(0, 9, (v) => shown.push(v));
    now += 1000;
    frames.shift()(now); // 4 stops
    p.stop();
    run(1000);
    expect(shown).toEqual([4]);
    expect(p.playing).toBe(false);
  });
});

describe("canvasLines", () => {
  it("grows with the canvas length within bounds, less in compact views", () => {
    expect(canvasLines(16, false)).toBe(6);
    expect(canvasLines(256, false)).toBe(22);
    expect(canvasLines(4096, false)).toBe(24);
    expect(canvasLines(16, true)).toBe(3);
    expect(canvasLines(4096, true)).toBe(7);
  });
});
