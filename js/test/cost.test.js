import { describe, expect, it } from "vitest";
import { costText } from "../src/controls.js";
import { driftText } from "../src/routing.js";

describe("costText", () => {
  it("says what the run cost, skipping what is unknown", () => {
    expect(costText({ forward_passes: 12, tokens_per_forward: 2.666, tokens_per_second: 35.04 }))
      .toBe(" (12 forward passes, 2.67 tokens/pass, 35.0 tokens/s)");
    expect(costText({ forward_passes: 3, tokens_per_forward: null })).toBe(" (3 forward passes)");
    expect(costText(undefined)).toBe("");
  });
});

describe("driftText", () => {
  const run = /** @type {any} */ ({
    shape: { experts: 8 },
    a: {
      routing_similarity: new Float32Array([NaN, NaN, 0.5, 0.25]),
      routing_changed: new Float32Array([NaN, NaN, 0.4, NaN]),
      routing_stayed: new Float32Array([NaN, NaN, 0.9, 0.25]),
      experts_used: new Uint16Array([8, 7, 6, 5]),
    },
  });
  it("reads [step, layer] arrays", () => {
    expect(driftText(run, 1, 0, 2)).toBe(
      "6 of 8 experts used \u00b7 similarity to the step before 0.50 (token changed 0.40, " +
      "stayed 0.90)");
    expect(driftText(run, 1, 1, 2)).toContain("token changed \u2013");
    expect(driftText(run, 0, 1, 2)).toBe("7 of 8 experts used \u00b7 first step of its canvas");
  });
  it("is blank without the arrays (live runs, no routing)", () => {
    expect(driftText(/** @type {any} */ ({ a: {}, shape: {} }), 0, 0, 1)).toBe("\u00a0");
  });
});
