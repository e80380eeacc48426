import { describe, expect, it } from "vitest";
import {
  advance, canvasBounds, clamp, fractionToStep, jumpCanvas, locate, stepBy, stepToFraction,
} from "../src/timeline.js";

const stepCanvas = [0, 0, 0, 1, 1, 2, 2, 2, 2];
const bounds = canvasBounds(stepCanvas);

describe("global steps and canvases", () => {
  it("finds each canvas's step range", () => {
    expect(bounds).toEqual([[0, 3], [3, 5], [5, 9]]);
    expect(canvasBounds([])).toEqual([]);
  });

  it("maps a global step to (canvas, local step)", () => {
    for (let s = 0; s < stepCanvas.length; s++) {
      const { canvas, local, lo } = locate(bounds, s);
      expect(canvas).toBe(stepCanvas[s]);
      expect(lo + local).toBe(s);
    }
    expect(locate(bounds, 4)).toEqual({ canvas: 1, local: 1, lo: 3, hi: 5, count: 2 });
    expect(() => locate(bounds, 9)).toThrow(RangeError);
    expect(() => locate(bounds, -1)).toThrow(RangeError);
  });

  it("steps and jumps canvases like a player", () => {
    expect(stepBy(0, -1, 9)).toBe(0);
    expect(stepBy(8, 1, 9)).toBe(8);
    expect(stepBy(2, 1, 9)).toBe(3);
    expect(jumpCanvas(bounds, 1, 1)).toBe(3);
    expect(jumpCanvas(bounds, 6, 1)).toBe(5); // last canvas: stay at its start
    expect(jumpCanvas(bounds, 4, -1)).toBe(3); // mid-canvas: back to its start first
    expect(jumpCanvas(bounds, 3, -1)).toBe(0);
  });

  it("maps strip positions to steps", () => {
    expect(fractionToStep(0, 9)).toBe(0);
    expect(fractionToStep(1, 9)).toBe(8);
    expect(fractionToStep(0.5, 9)).toBe(4);
    expect(fractionToStep(-3, 9)).toBe(0);
    for (let s = 0; s < 9; s++) expect(fractionToStep(stepToFraction(s, 9), 9)).toBe(s);
    expect(stepToFraction(0, 0)).toBe(0);
  });

  it("clamps", () => {
    expect(clamp(5, 0, 3)).toBe(3);
    expect(clamp(-1, 0, 3)).toBe(0);
    expect(clamp(2, 0, 3)).toBe(2);
  });
});

describe("playback", () => {
  it("advances by speed x time and carries fractions", () => {
    let st = { step: 0, carry: 0 };
    st = advance(st, 100, 4, 9); // 0.4 step
    expect(st.step).toBe(0);
    expect(st.carry).toBeCloseTo(0.4);
    st = advance(st, 200, 4, 9); // +0.8 -> 1.2
    expect(st.step).toBe(1);
    expect(st.carry).toBeCloseTo(0.2);
    expect(st.playing).toBe(true);
  });

  it("stops at the last step", () => {
    const st = advance({ step: 7, carry: 0 }, 5000, 4, 9);
    expect(st).toEqual({ step: 8, carry: 0, playing: false });
  });
});
