// @ts-check
// "Branch here": with a model attached (Python's `Timeline(trace, model=, tokenizer=)`), pin a
// position, pick a replacement from its top-k alternatives or type one, and ask the kernel to
// replay the run up to this step with that token held (dgviz.branch). One fixed line: it is
// always there in a widget that can branch (disabled until a position is pinned), so it never
// changes the widget's height. Token text reaches the page through textContent only.
import { h, setAttr, setText } from "./dom.js";
import { tokenText } from "./data.js";
import { clip, visible } from "./layout.js";
/** @import { Chunk, Run } from "./types.js" */
/** @import { Location } from "./timeline.js" */

/**
 * What the kernel is asked: the step, the position and the token (an id, or typed text that the
 * kernel checks is exactly one token).
 * @typedef {{kind: "branch", step: number, position: number, token?: number, text?: string}}
 *   BranchRequest
 */

/**
 * The request for the current choice: typed text wins over the chosen alternative.
 * @param {number} step @param {number} position @param {string} typed @param {string} chosen
 * @returns {BranchRequest | null}
 */
export function branchRequest(step, position, typed, chosen) {
  if (typed !== "") return { kind: "branch", step, position, text: typed };
  const id = Number(chosen);
  if (chosen === "" || !Number.isInteger(id) || id < 0) return null;
  return { kind: "branch", step, position, token: id };
}

export class BranchBar {
  /** @param {(request: BranchRequest) => void} send */
  constructor(send) {
    this.send = send;
    this.label = h("span", { class: "dgv-branch-label" });
    this.choice = h("select", { class: "dgv-branch-alt",
      title: "Replace the pinned token with one of its top-k alternatives at this step" });
    this.input = h("input", { type: "text", class: "dgv-branch-text",
      placeholder: "or type a token",
      title: "Text that is exactly one token (it is checked by the tokenizer)",
      "aria-label": "replacement token" });
    this.button = h("button", { type: "button", class: "dgv-btn dgv-branch-go",
      title: "Replay the run to this step with this token, then let it resume (dgviz.branch)",
      onclick: () => this.submit() }, "Branch here");
    this.el = h("div", { class: "dgv-branch dgv-line", "data-ready": "false" },
      this.label, this.choice, this.input, this.button);
    /** @type {{step: number, position: number} | null} */
    this.target = null;
    this.key = "";
    this.el.hidden = true;
  }

  /** Shown only in a widget that can branch (fixed for its lifetime). @param {boolean} on */
  enable(on) { this.el.hidden = !on; }

  /** Nothing pinned: the line stays, disabled. */
  idle() {
    this.target = null;
    this.key = "";
    this.el.dataset.ready = "false";
    setText(this.label, "Pin a token (click it) to branch the run there.");
    this.choice.replaceChildren();
    this.choice.disabled = true;
    this.input.disabled = true;
    this.button.disabled = true;
  }

  /**
   * The pinned position at the current step: its alternatives fill the menu.
   * @param {Run} run @param {Chunk} chunk @param {Location} loc @param {number} step
   * @param {number} pos
   */
  show(run, chunk, loc, step, pos) {
    const key = `${chunk.version}:${step}:${pos}`;
    if (key === this.key) return;
    this.key = key;
    this.target = { step, position: pos };
    this.el.dataset.ready = "true";
    setText(this.label, `Branch at step ${step + 1}, position ${pos}:`);
    const i = loc.local * chunk.L + pos, K = chunk.K;
    const options = [];
    for (let j = 0; j < K; j++) {
      const id = chunk.topk_ids[i * K + j], p = chunk.topk_probs[i * K + j];
      const draft = id === chunk.draft[i] ? ", the draft" : "";
      const text = `${clip(visible(tokenText(run, id)), 24)}  (${(100 * p).toFixed(1)}%${draft})`;
      options.push(h("option", { value: id }, text));
    }
    this.choice.replaceChildren(...options);
    this.choice.disabled = options.length === 0;
    this.input.disabled = false;
    this.button.disabled = false;
    setAttr(this.el, "data-step", String(step));
    setAttr(this.el, "data-position", String(pos));
  }

  submit() {
    if (!this.target) return;
    const request = branchRequest(this.target.step, this.target.position,
      this.input.value.trim() === "" ? "" : this.input.value, this.choice.value);
    if (!request) return;
    this.send(request);
    this.input.value = "";
  }
}
