import { describe, expect, it } from "vitest";
import { positionOf, stepAt, stepsInfo, syncExtent } from "../src/timeline.js";

const a = stepsInfo([1, 1, 1, 1, 1, 1, 1, 1, 1]); // 9 steps, 9 passes
const b = stepsInfo([1, 1, 1, 1, 1]);             // 5 steps
const c = stepsInfo([1, 1, 1, 0, 0, 0]);          // a batch row that finished after 3 passes

describe("stepsInfo", () => {
  it("counts forward passes before each step from `active`", () => {
    expect([...c.before]).toEqual([0, 1, 2, 3, 3, 3]);
    expect(c.passes).toBe(3);
    expect(stepsInfo([]).passes).toBe(0);
  });
});

describe("normalized mode", () => {
  it("maps the ends to the ends and the middle to the middle", () => {
    for (const info of [a, b, c]) {
      expect(stepAt(0, "normalized", info)).toBe(0);
      expect(stepAt(1, "normalized", info)).toBe(info.steps - 1);
    }
    expect(stepAt(0.5, "normalized", a)).toBe(4);
    expect(stepAt(0.5, "normalized", b)).toBe(2);
  });

  it("round-trips every step of a run", () => {
    for (const info of [a, b, c]) for (let s = 0; s < info.steps; s++) {
      expect(stepAt(positionOf(s, "normalized", info), "normalized", info)).toBe(s);
    }
  });

  it("clamps out-of-range and non-finite positions; one-step and empty runs stay at 0", () => {
    expect(stepAt(-3, "normalized", a)).toBe(0);
    expect(stepAt(7, "normalized", a)).toBe(8);
    expect(stepAt(NaN, "normalized", a)).toBe(0);
    expect(stepAt(0.7, "normalized", stepsInfo([1]))).toBe(0);
    expect(stepAt(0.7, "normalized", stepsInfo([]))).toBe(0);
    expect(positionOf(0, "normalized", stepsInfo([1]))).toBe(0);
  });
});

describe("forward_passes mode", () => {
  it("moves runs pass for pass; a finished run shows its last step", () => {
    expect(stepAt(3, "forward_passes", a)).toBe(3);
    expect(stepAt(3, "forward_passes", b)).toBe(3);
    expect(stepAt(7, "forward_passes", b)).toBe(4); // b finished after 5 passes
    expect(stepAt(100, "forward_passes", a)).toBe(8);
  });

  it("shows a row's last step once it stops being active", () => {
    expect(stepAt(2, "forward_passes", c)).toBe(2);
    expect(stepAt(3, "forward_passes", c)).toBe(5);
  });

  it("round-trips the steps that cost a pass, and clamps below 0", () => {
    for (let s = 0; s < a.steps; s++) expect(stepAt(positionOf(s, "forward_passes", a), "forward_passes", a)).toBe(s);
    expect(stepAt(-1, "forward_passes", a)).toBe(0);
    expect(positionOf(99, "forward_passes", b)).toBe(4);
  });
});

describe("syncExtent", () => {
  it("spans the longest run", () => {
    expect(syncExtent("forward_passes", [a, b, c])).toEqual({ max: 8, scale: 1 });
    expect(syncExtent("normalized", [a, b, c])).toEqual({ max: 8, scale: 8 });
    expect(syncExtent("normalized", [])).toEqual({ max: 1, scale: 1 });
  });
});
