import { describe, expect, it } from "vitest";
import { positionOf, stepAt, stepsInfo, syncExtent } from "../src/timeline.js";
import { joinGroup } from "../src/sync.js";

const a = stepsInfo([1, 1, 1, 1, 1, 1, 1, 1, 1]); // 9 steps, 9 passes
const b = stepsInfo([1, 1, 1, 1, 1]);             // 5 steps
const c = stepsInfo([1, 1, 1, 0, 0, 0]);          // a batch row that finished after 3 passes

describe("stepsInfo", () => {
  it("counts forward passes before each step from `active`", () => {
    expect([...c.before]).toEqual([0, 1, 2, 3, 3, 3]);
    expect(c.passes).toBe(3);
    expect(stepsInfo([]).passes).toBe(0);
  });

  it("counts a step's extra passes (a diffusers corrector sweep) on the shared axis", () => {
    const corrected = stepsInfo([2, 2, 2, 1]); // a corrector sweep after each step but the last
    expect([...corrected.before]).toEqual([0, 2, 4, 6]);
    expect(corrected.passes).toBe(7);
    expect(stepAt(5, "forward_passes", corrected)).toBe(2);
    expect(stepAt(3, "forward_passes", c)).toBe(5); // the plain run has finished by then
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
    for (let s = 0; s < a.steps; s++) {
      expect(stepAt(positionOf(s, "forward_passes", a), "forward_passes", a)).toBe(s);
    }
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

describe("joinGroup", () => {
  const member = (log, name, info = a) => ({
    info: () => info,
    onPosition: (p) => log.push(`${name} at ${p}`),
    onMode: (m) => log.push(`${name} mode ${m}`),
    refresh: () => log.push(`${name} refresh`),
  });

  it("keeps the groups on the page (globalThis), shared by every copy of the bundle", () => {
    const log = [];
    const one = joinGroup("g-page", member(log, "one"), "normalized");
    expect(globalThis[Symbol.for("dgviz.sync-groups.v1")].get("g-page")).toBe(one.group);
    one.leave();
    expect(globalThis[Symbol.for("dgviz.sync-groups.v1")].has("g-page")).toBe(false);
  });

  it("moves the other members, not the sender, and remembers the position", () => {
    const log = [];
    const one = joinGroup("g1", member(log, "one"), "normalized");
    const two = joinGroup("g1", member(log, "two", b), "forward_passes"); // the group's mode wins
    expect(two.mode).toBe("normalized");
    expect(log).toEqual(["one refresh"]); // the shared axis may have grown
    one.broadcast(0.5);
    expect(log.at(-1)).toBe("two at 0.5");
    expect(two.position).toBe(0.5);
    expect(one.infos()).toEqual([a, b]);
    two.setMode("forward_passes");
    expect(log.slice(-2)).toEqual(["one mode forward_passes", "two mode forward_passes"]);
    two.setMode("sideways"); // not a mode: ignored
    expect(one.mode).toBe("forward_passes");
    two.leave();
    expect(one.size()).toBe(1);
    one.leave();
  });

  it("starts a group in normalized mode when the mode is unknown", () => {
    const g = joinGroup("g2", member([], "x"), "bogus");
    expect(g.mode).toBe("normalized");
    g.leave();
  });
});
