import { describe, expect, it } from "vitest";
import {
  contrast, expertColor, expertStyle, hexToRgb, intensity, mix, rgbToHex, textColorFor, tokenStyle,
  FINAL, HELD, KEPT, MASKED, NEW, RENOISED, STATE_NAMES, statesOf,
} from "../src/colors.js";

// the Python palette (dgviz.palette.as_dict()), as the widget receives it
const palette = {
  states: ["#BBBBBB", "#E69F00", "#56B4E9", "#009E73", "#4A4A4A", "#CC79A7"],
  stateText: ["#444444", "#000000", "#000000", "#FFFFFF", "#FFFFFF", "#000000"],
  experts: ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"],
};

describe("colour maths", () => {
  it("round-trips hex and mixes linearly", () => {
    expect(rgbToHex(hexToRgb("#0072B2"))).toBe("#0072B2");
    expect(mix("#000000", "#FFFFFF", 0.5)).toBe("#808080");
    expect(mix("#FFFFFF", "#009E73", 1)).toBe("#009E73");
    expect(() => hexToRgb("red")).toThrow();
  });

  it("picks the text colour with the higher contrast", () => {
    expect(textColorFor("#FFFFFF")).toBe("#000000");
    expect(textColorFor("#000000")).toBe("#FFFFFF");
    expect(textColorFor("#0072B2")).toBe("#FFFFFF");
  });
});

describe("tokenStyle", () => {
  it("colours each state with its palette colour at full confidence", () => {
    expect(tokenStyle(NEW, 1, palette).bg).toBe("#E69F00");
    expect(tokenStyle(KEPT, 1, palette).bg).toBe("#56B4E9");
    expect(tokenStyle(FINAL, 1, palette).bg).toBe("#009E73");
  });

  it("shows masked positions (masked diffusion) dark and readable, whatever the confidence", () => {
    const a = tokenStyle(MASKED, 0.99, palette), b = tokenStyle(MASKED, 0.01, palette);
    expect(a).toEqual(b);
    expect(a.bg).toBe("#4A4A4A");
    expect(contrast(a.bg, a.fg)).toBeGreaterThanOrEqual(4.5);
  });

  it("lists a run's states: masked instead of re-noised for masked diffusion", () => {
    expect(statesOf(null).map((s) => STATE_NAMES[s]))
      .toEqual(["re-noised", "accepted this step", "accepted earlier", "final"]);
    expect(statesOf(63)).toEqual([MASKED, NEW, KEPT, FINAL]);
    expect(statesOf(0)[0]).toBe(MASKED);
  });

  it("adds the held state for runs that held tokens, readable at full colour", () => {
    expect(statesOf(null, true)).toEqual([RENOISED, NEW, KEPT, FINAL, HELD]);
    expect(STATE_NAMES[HELD]).toBe("held");
    const st = tokenStyle(HELD, 1, palette);
    expect(st.bg).toBe("#CC79A7");
    expect(contrast(st.bg, st.fg)).toBeGreaterThanOrEqual(4.5);
  });

  it("shows re-noised tokens dim whatever their confidence", () => {
    const a = tokenStyle(RENOISED, 0.99, palette), b = tokenStyle(RENOISED, 0.01, palette);
    expect(a).toEqual(b);
    expect(a.dim).toBe(true);
  });

  it("fades with lower confidence (intensity), and stays readable", () => {
    const lo = tokenStyle(FINAL, 0.05, palette), hi = tokenStyle(FINAL, 0.95, palette);
    expect(lo.bg).not.toBe(hi.bg);
    expect(hexToRgb(lo.bg)[0]).toBeGreaterThan(hexToRgb(hi.bg)[0]); // closer to white
    for (const s of [NEW, KEPT, FINAL]) for (const c of [0, 0.3, 0.7, 1, NaN]) {
      const st = tokenStyle(s, c, palette);
      expect(contrast(st.bg, st.fg)).toBeGreaterThanOrEqual(4.5);
    }
    expect(intensity(NaN)).toBe(intensity(0));
    expect(intensity(2)).toBe(1);
  });
});

describe("expert colours", () => {
  it("cycles the palette and marks missing routing", () => {
    expect(expertColor(9, palette)).toBe(palette.experts[1]);
    expect(expertStyle(-1, 1, palette).dim).toBe(true);
    expect(expertStyle(7, 1, palette).fg).toBe("#FFFFFF");
  });
});
