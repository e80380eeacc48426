import { describe, expect, it } from "vitest";
import { expertLoad, explainMaskedStep, explainStep } from "../src/explain.js";
import { boundAt } from "../src/explainer.js";
import { shownToken, history, expertsAt, topExpert, formatBytes } from "../src/data.js";

describe("explainStep", () => {
  it("sorts entropies (stably) and computes the bound's left side", () => {
    const ent = new Float32Array([0.5, 0.01, 0.02, 0.5, 3.0]);
    const acc = new Uint8Array([0, 1, 1, 0, 0]);
    const ex = explainStep(ent, acc, 0.1);
    expect(ex.order).toEqual([1, 2, 0, 3, 4]);
    expect(Array.from(ex.acceptedSorted)).toEqual([1, 1, 0, 0, 0]);
    expect(ex.nAccepted).toBe(2);
    expect(ex.criterion[0]).toBe(0);
    expect(ex.criterion[1]).toBeCloseTo(0.01, 6);
    expect(ex.criterion[2]).toBeCloseTo(0.03, 6);
    expect(ex.withinBound).toBe(3); // 0.03 <= 0.1; the next is 0.53
    expect(explainStep(ent, acc, NaN).withinBound).toBe(0);
  });
});

describe("expertLoad", () => {
  it("counts top-k slots per expert for one layer", () => {
    // [N=2, L=3, k=2]
    const ids = [0, 1, 1, 2, 1, 0, /* layer 1 */ 3, 3, 3, 3, 3, 3];
    expect(expertLoad(ids, 0, 3, 2, 4)).toEqual([2, 3, 1, 0]);
    expect(expertLoad(ids, 0, 3, 2, 4, true)).toEqual([1, 2, 0, 0]);
    expect(expertLoad(ids, 1, 3, 2, 4)).toEqual([0, 0, 0, 6]);
  });
});

describe("chunk accessors", () => {
  // 2 steps x 3 positions; states: step 0 = [re-noised, new, final];
  // step 1 = [re-noised, kept, final]
  const chunk = {
    n: 2, L: 3, layers: 1, k: 2,
    canvas_in: new Int32Array([10, 11, 12, 20, 21, 22]),
    sampled: new Int32Array([30, 31, 32, 40, 41, 42]),
    draft: new Int32Array([50, 51, 52, 60, 61, 62]),
    state: new Uint8Array([0, 1, 3, 0, 2, 3]),
    confidence: new Float32Array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
    expert_ids: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 0, 1, 1, 2, 2]),
    expert_weights: new Float32Array([0.6, 0.4, 0.7, 0.3, 0.5, 0.5, 0.9, 0.1, 0.8, 0.2, 1, 0]),
  };

  it("shows the random token (re-noised), the kept token (accepted), the draft (final)", () => {
    expect(shownToken(chunk, 0, 0, "canvas")).toBe(20); // the next step's input
    expect(shownToken(chunk, 1, 0, "canvas")).toBe(40); // last step: sampled
    expect(shownToken(chunk, 0, 1, "canvas")).toBe(31);
    expect(shownToken(chunk, 0, 2, "canvas")).toBe(52);
    expect(shownToken(chunk, 1, 1, "draft")).toBe(61);
    const masked = { ...chunk, state: new Uint8Array([4, 1, 3, 4, 2, 3]) };
    expect(shownToken(masked, 0, 0, "canvas")).toBe(50); // a masked position: the mask token
  });

  it("reads histories and experts", () => {
    expect(Array.from(history(chunk, "confidence", 1)))
      .toEqual([Math.fround(0.2), Math.fround(0.5)]);
    expect(topExpert(chunk, 1, 0, 1)).toBe(1);
    const ex = expertsAt(chunk, 0, 2);
    expect(ex[0].picks.map((p) => p.expert)).toEqual([5, 6]);
    expect(formatBytes(2_500_000)).toBe("2.5 MB");
  });
});

describe("explainMaskedStep (LLaDA2)", () => {
  it("sorts the masked positions by confidence and counts commits, edits, still masked", () => {
    const M = 99;
    const canvasIn = [M, 5, M, M, 7];
    const draft = [3, 6, M, 4, 7];
    const conf = [0.9, 0.8, 0.2, 0.95, 0.5];
    const ex = explainMaskedStep(conf, canvasIn, draft, M);
    expect(ex.order).toEqual([3, 0, 2]);
    expect(Array.from(ex.committedSorted)).toEqual([1, 1, 0]);
    expect(ex.nCommitted).toBe(2);
    expect(ex.nEdited).toBe(1); // position 1: 5 -> 6
    expect(ex.stillMasked).toBe(1);
  });
});

describe("boundAt", () => {
  it("follows a branch's setting changes from their step on", () => {
    const changes = [{ step: 4, settings: { entropy_bound: 2 } },
      { step: 9, settings: { t_min: 1 } }];
    const run = /** @type {any} */ ({ info: { settings: { entropy_bound: 0.1 }, changes } });
    expect(boundAt(run, 3)).toBe(0.1);
    expect(boundAt(run, 4)).toBe(2);
    expect(boundAt(run, 12)).toBe(2);
    expect(boundAt(/** @type {any} */ ({ info: {} }), 0)).toBeNaN();
  });
});
