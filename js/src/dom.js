// @ts-check
// DOM helpers. Text (token text is untrusted model output) only ever reaches the page through
// textContent, createTextNode and setAttribute: never innerHTML or HTML built from strings.

/**
 * @typedef {Record<string, string | number | boolean | null | undefined | EventListener>} Attrs
 */

/**
 * Create an element. Attributes go through setAttribute (`on*` become listeners); children are
 * nodes or plain text.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...(Node | string | null | undefined)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    el.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

/** Set an element's text, only when it changed. @param {Element} el @param {string} text */
export function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

/**
 * Set an attribute, only when it changed.
 * @param {Element} el
 * @param {string} name
 * @param {string} value
 */
export function setAttr(el, name, value) {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

/**
 * Size a <canvas> for the device pixel ratio and clear it; returns its 2D context in CSS pixels.
 * @param {HTMLCanvasElement} canvas @param {number} w @param {number} hgt
 */
export function sizeCanvas(canvas, w, hgt) {
  const dpr = globalThis.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
    canvas.style.width = `${w}px`;
    canvas.style.height = `${hgt}px`;
  }
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  return ctx;
}

/**
 * Chart width that fits a panel `width` px wide (0: not laid out yet, as when `render` runs in
 * a hidden output: a fixed width until the panel has a size).
 * @param {number} width @param {number} max
 */
export function chartWidth(width, max) {
  const inner = width - 18;
  return inner > 0 ? Math.max(160, Math.min(max, inner)) : 320;
}

/**
 * A number with `digits` decimals, "–" when it is not finite.
 * @param {number} v
 * @param {number} [digits]
 */
export function fmt(v, digits = 2) { return Number.isFinite(v) ? v.toFixed(digits) : "\u2013"; }

// ---------------------------------------------------------------- icons
// Inline SVG (no icon font, no glyph that a system font may lack: U+23F8 "pause" shows as an
// empty box with Debian's fonts). Paths on a 16 x 16 grid, filled with the text colour.
const SVG = "http://www.w3.org/2000/svg";
/** @type {Record<string, [string, string[]][]>} */
const ICONS = {
  play: [["polygon", ["points", "4,2 14,8 4,14"]]],
  pause: [["rect", ["x", "3", "y", "2", "width", "3.5", "height", "12"]],
    ["rect", ["x", "9.5", "y", "2", "width", "3.5", "height", "12"]]],
  "step-back": [["rect", ["x", "2", "y", "3", "width", "2", "height", "10"]],
    ["polygon", ["points", "14,3 5,8 14,13"]]],
  "step-forward": [["rect", ["x", "12", "y", "3", "width", "2", "height", "10"]],
    ["polygon", ["points", "2,3 11,8 2,13"]]],
  "canvas-back": [["polygon", ["points", "8,3 1,8 8,13"]],
    ["polygon", ["points", "15,3 8,8 15,13"]]],
  "canvas-forward": [["polygon", ["points", "1,3 8,8 1,13"]],
    ["polygon", ["points", "8,3 15,8 8,13"]]],
  stop: [["rect", ["x", "3", "y", "3", "width", "10", "height", "10"]]],
};

/**
 * Create an SVG element (attributes through setAttribute).
 * @param {string} tag @param {Record<string, string>} [attrs]
 * @returns {SVGElement}
 */
export function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

/** An inline SVG icon (decorative: the button around it carries the label). @param {string} name */
export function icon(name) {
  const root = svg("svg", { viewBox: "0 0 16 16", width: "12", height: "12",
    "aria-hidden": "true", focusable: "false", class: `dgv-icon dgv-icon-${name}` });
  for (const [tag, attrs] of ICONS[name]) {
    const shape = svg(tag);
    for (let i = 0; i < attrs.length; i += 2) shape.setAttribute(attrs[i], attrs[i + 1]);
    root.append(shape);
  }
  return root;
}
