// @ts-check
// How token text is laid out: real newlines and indentation are kept (the canvas is a
// `white-space: pre-wrap` block), but whitespace and control characters never become invisible.

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/g;

/** @param {string} ch */
function controlPicture(ch) {
  const code = ch.charCodeAt(0);
  return code === 0x7f ? "\u2421" : String.fromCharCode(0x2400 + code);
}

/**
 * Text of one token as shown in the canvas: a newline shows "↵" and then breaks the line, so
 * the next tokens start a new line (with their indentation); other control characters become
 * their Unicode control pictures; an empty token shows "∅" so it can still be clicked.
 * @param {string} text
 */
export function displayText(text) {
  if (text === "") return "\u2205";
  return text.replace(/\r\n?/g, "\n").replace(CONTROL, controlPicture).replace(/\n/g, "\u21b5\n");
}

/**
 * One-line label (inspector, lists): "·" space, "↵" newline, "⇥" tab, as dgviz.trace.visible.
 * @param {string} text
 */
export function visible(text) {
  if (text === "") return "\u2205";
  return text.replace(/ /g, "\u00b7").replace(/\r\n?|\n/g, "\u21b5").replace(/\t/g, "\u21e5")
    .replace(CONTROL, controlPicture);
}

/** Clip a long label for small UI slots. @param {string} text @param {number} [max] */
export function clip(text, max = 24) {
  return text.length > max ? `${text.slice(0, max - 1)}\u2026` : text;
}
