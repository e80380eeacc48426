// @ts-check
// State and expert colours. The palette comes from Python (dgviz/palette.py, `palette.as_dict()`);
// these functions only mix it with white for intensity and pick a readable text colour.
/** @import { Palette } from "./types.js" */

/** @typedef {{bg: string, fg: string, dim: boolean}} TokenStyle */

/** @param {string} hex "#RRGGBB" @returns {[number, number, number]} */
export function hexToRgb(hex) {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex);
  if (!m) throw new Error(`dgviz: bad colour ${hex}`);
  const n = parseInt(m[1], 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/** @param {number[]} rgb @returns {string} "#RRGGBB" */
export function rgbToHex([r, g, b]) {
  /** @param {number} v */
  const h = (v) => Math.round(Math.max(0, Math.min(255, v))).toString(16).padStart(2, "0");
  return `#${h(r)}${h(g)}${h(b)}`.toUpperCase();
}

/**
 * Linear mix of two "#RRGGBB" colours: t = 0 gives a, t = 1 gives b.
 * @param {string} a @param {string} b @param {number} t
 */
export function mix(a, b, t) {
  const x = hexToRgb(a), y = hexToRgb(b);
  return rgbToHex([0, 1, 2].map((i) => x[i] + (y[i] - x[i]) * t));
}

/** WCAG relative luminance of "#RRGGBB". @param {string} hex */
export function luminance(hex) {
  const lin = hexToRgb(hex).map((v) => {
    const c = v / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
}

/** WCAG contrast ratio of two colours. @param {string} a @param {string} b */
export function contrast(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

/** Black or white, whichever reads better on `bg`. @param {string} bg */
export function textColorFor(bg) {
  return contrast(bg, "#000000") >= contrast(bg, "#FFFFFF") ? "#000000" : "#FFFFFF";
}

export const RENOISED = 0, NEW = 1, KEPT = 2, FINAL = 3, MASKED = 4, HELD = 5;
export const STATE_NAMES = ["re-noised", "accepted this step", "accepted earlier", "final",
  "masked", "held"];

/**
 * The states a run's positions can take, in legend order (dgviz.trace.Trace.state_values):
 * masked diffusion (a mask token id) has "masked" instead of "re-noised"; a run that held tokens
 * (hold=, a branch's edits) adds "held".
 * @param {number | null | undefined} maskTokenId @param {boolean} [held]
 */
export function statesOf(maskTokenId, held = false) {
  const states = maskTokenId === null || maskTokenId === undefined
    ? [RENOISED, NEW, KEPT, FINAL] : [MASKED, NEW, KEPT, FINAL];
  return held ? [...states, HELD] : states;
}

/**
 * Confidence (0..1) -> how much of the state colour shows (the rest is white).
 * @param {number} confidence
 */
export function intensity(confidence) {
  const c = Number.isFinite(confidence) ? Math.max(0, Math.min(1, confidence)) : 0;
  return 0.3 + 0.7 * c;
}

/**
 * Background and text colour of a token in the "state" view.
 * Re-noised tokens are random: a fixed pale background and grey text (dim), whatever the
 * confidence. Masked positions (masked diffusion) hold no token yet: the palette's dark grey,
 * whatever the confidence. The other states mix their palette colour with white by confidence.
 * @param {number} state @param {number} confidence @param {Palette} palette
 * @returns {TokenStyle}
 */
export function tokenStyle(state, confidence, palette) {
  const base = palette.states[state] ?? palette.states[RENOISED];
  if (state === RENOISED) return { bg: mix("#FFFFFF", base, 0.35), fg: "#6B6B6B", dim: true };
  if (state === MASKED) return { bg: base, fg: textColorFor(base), dim: true };
  const bg = mix("#FFFFFF", base, intensity(confidence));
  return { bg, fg: textColorFor(bg), dim: false };
}

/**
 * Colour of expert `e` (the palette cycles when there are more experts than colours).
 * @param {number} e @param {Palette} palette
 */
export function expertColor(e, palette) {
  const list = palette.experts;
  return list[((e % list.length) + list.length) % list.length];
}

/**
 * Token coloured by its top-1 expert; the router weight gives the intensity.
 * @param {number} expert @param {number} weight @param {Palette} palette
 * @returns {TokenStyle}
 */
export function expertStyle(expert, weight, palette) {
  if (expert < 0) return { bg: "#FFFFFF", fg: "#6B6B6B", dim: true };
  const w = Math.max(0, Math.min(1, weight));
  const bg = mix("#FFFFFF", expertColor(expert, palette), 0.45 + 0.55 * w);
  return { bg, fg: textColorFor(bg), dim: false };
}
