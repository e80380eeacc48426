// @ts-check
// Types of the payload the widget receives (dgviz/widget.py builds it; docs/widget.md describes
// it), and of its decoded form. JSDoc only: this module exports no values.

/**
 * A typed array of one of the wire dtypes (float16 arrives widened to Float32Array).
 * @typedef {Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array
 *   | Float32Array | Float64Array} Typed
 */

/**
 * An encoded array on the wire: `data` is a binary buffer (a DataView from Jupyter, an
 * ArrayBuffer or bytes); the offline HTML page sends `b64` (base64 of the same bytes) instead.
 * @typedef {object} Encoded
 * @property {string} dtype "uint8", "int32", "float16", ...
 * @property {number[]} shape
 * @property {DataView | ArrayBuffer | Uint8Array} [data]
 * @property {string} [b64]
 */

/**
 * A decoded array.
 * @typedef {{dtype: string, shape: number[], data: Typed}} NDArray
 */

/**
 * Colours from dgviz.palette.as_dict(): one per state, and a cycle for experts.
 * @typedef {{states: string[], experts: string[], stateText?: string[]}} Palette
 */

/**
 * @typedef {object} RunShape
 * @property {number} steps global steps (all canvases)
 * @property {number} length positions per canvas
 * @property {number} canvases
 * @property {number} topk alternatives kept per position and step
 * @property {number} layers routed decoder layers (0 without routing)
 * @property {number} k experts per token
 * @property {number} experts
 */

/**
 * Sampler settings as recorded (any may be missing, and Python's NaN arrives as null).
 * @typedef {object} Settings
 * @property {string} [sampler]
 * @property {number | null} [entropy_bound]
 * @property {number | null} [max_denoising_steps]
 * @property {number | null} [stability_threshold]
 * @property {number | null} [confidence_threshold]
 * @property {number | null} [pad_token_id]
 */

/**
 * @typedef {object} RunInfo
 * @property {Settings} settings
 * @property {string} model_name
 * @property {boolean} complete
 * @property {boolean} live
 * @property {string} prompt_text
 * @property {string} text
 * @property {number} row
 * @property {number} batch_size
 * @property {number | null} pad_token_id
 * @property {string} [family] "diffusion_gemma" or "llada2"
 * @property {number | null} [mask_token_id] masked diffusion's mask token (null otherwise)
 * @property {boolean} [held] the run held tokens (hold=, a branch's edits): "held" state
 * @property {Fork | null} [fork] where this run was branched from its parent
 * @property {RunStats} [stats] Trace.stats() of this row
 * @property {{step: number, settings: Record<string, number>}[]} [changes] settings changed
 *   mid-run (a branch), in step order
 */

/**
 * What the run cost (dgviz.Trace.stats(), one row).
 * @typedef {object} RunStats
 * @property {number} [forward_passes] @property {number} [tokens]
 * @property {number | null} [tokens_per_forward] @property {number | null} [tokens_per_second]
 * @property {number | null} [accepted_per_step] @property {number} [max_accepted_per_step]
 */

/**
 * Where a branch forked from its parent (dgviz.Trace.fork).
 * @typedef {object} Fork
 * @property {string} parent the parent's run id
 * @property {number} step the first step that differs (global)
 * @property {number} canvas @property {number} row
 * @property {Record<string, number>} edits position -> token id
 * @property {Record<string, number>} settings settings changed from the fork on
 */

/**
 * How the canvases reach the browser.
 * @typedef {object} Transport
 * @property {"all" | "on-demand"} [mode]
 * @property {number} [total_bytes]
 * @property {number} [cap_bytes]
 * @property {boolean} [routing]
 * @property {boolean} [offline]
 */

/**
 * The per-step and per-canvas arrays of `_run`, by name.
 * @typedef {"step_canvas" | "step_remaining" | "temperature" | "step_seconds" | "active" | "passes"
 *   | "stop" | "prompt_ids" | "final_tokens" | "lock_in" | "first_accepted" | "flips"
 *   | "routing_similarity" | "routing_changed" | "routing_stayed" | "experts_used"} RunArrayName
 * (the last four, `[steps, layers]`, only for a finished run with routing)
 */

/**
 * The `_run` trait: the small whole-run part.
 * @typedef {object} RunPayload
 * @property {number} version
 * @property {RunShape} shape
 * @property {Record<RunArrayName, Encoded>} arrays
 * @property {RunInfo} info
 * @property {Palette} palette
 * @property {Transport} transport
 * @property {number} initial_step
 */

/**
 * A decoded run: the payload's facts, its arrays as typed arrays (`a`), each canvas's global
 * step range (`bounds`) and the token text table.
 * @typedef {object} Run
 * @property {RunShape} shape
 * @property {RunInfo} info
 * @property {Palette} palette
 * @property {Transport} transport
 * @property {number} initial_step
 * @property {number} steps
 * @property {number} length
 * @property {[number, number][]} bounds
 * @property {Record<RunArrayName, Typed>} a
 * @property {Record<string, string>} token_text
 */

/**
 * The arrays of one canvas chunk, by name: `[n, L]`; `topk_*` `[n, L, K]`; `expert_*`
 * `[n, layers, L, k]`; `router_entropy` `[n, layers, L]`.
 * @typedef {"canvas_in" | "sampled" | "draft" | "state" | "accepted" | "confidence"
 *   | "entropy" | "topk_ids" | "topk_probs" | "expert_ids" | "expert_weights"
 *   | "router_entropy" | "differs"} ChunkArrayName
 */

/**
 * One canvas on the wire (an entry of `_chunks`, or `_live`): its steps' arrays.
 * @typedef {{canvas: number, lo: number, version: number}
 *   & Partial<Record<ChunkArrayName, Encoded>>} ChunkPayload
 */

/**
 * A decoded canvas chunk: `n` steps of `L` positions. Routing arrays are missing when routing
 * was left out.
 * @typedef {object} Chunk
 * @property {number} canvas
 * @property {number} lo first global step
 * @property {number} version
 * @property {number} n steps
 * @property {number} L positions
 * @property {number} K alternatives per position
 * @property {number} layers
 * @property {number} k experts per token
 * @property {Typed} canvas_in
 * @property {Typed} sampled
 * @property {Typed} draft
 * @property {Typed} state
 * @property {Typed} [accepted]
 * @property {Typed} confidence
 * @property {Typed} entropy
 * @property {Typed} topk_ids
 * @property {Typed} topk_probs
 * @property {Typed} [expert_ids]
 * @property {Typed} [expert_weights]
 * @property {Typed} [router_entropy]
 * @property {Typed} [differs] a branch: 1 where its draft differs from its parent's
 */

/**
 * The part of an anywidget model the view uses (the offline page's shim has the same).
 * @typedef {object} Model
 * @property {(name: string) => any} get
 * @property {(name: string, value: unknown) => void} set
 * @property {(name: string, fn: () => void) => void} on
 * @property {(name: string, fn: () => void) => void} off
 * @property {() => void} save_changes
 * @property {(msg: object) => void} send
 */

export {};
