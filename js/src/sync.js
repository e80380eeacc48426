// @ts-check
// Synchronized replay: Timeline views with the same `sync` group scrub together, in the browser
// only (no kernel round trip, so it works in the offline HTML page too).
//
// The registry lives on globalThis under a Symbol.for key, not in a module variable: anywidget
// may import the bundle once per widget (each import is a separate module instance), and every
// view of the page must see the same groups. Nothing else is put on the page.
import { SYNC_MODES } from "./timeline.js";
/** @import { StepsInfo, SyncMode } from "./timeline.js" */

const KEY = Symbol.for("dgviz.sync-groups.v1");

/**
 * A view in a group.
 * @typedef {object} Member
 * @property {() => StepsInfo | null} info its steps (null while it has none)
 * @property {(position: number, source: Member) => void} onPosition another member moved
 * @property {(mode: SyncMode) => void} onMode the group's mode changed
 * @property {() => void} refresh the group changed (the shared axis may have grown)
 */

/**
 * @typedef {object} Group
 * @property {string} name
 * @property {Set<Member>} members
 * @property {SyncMode} mode
 * @property {number | null} position the last shared position, for views that join later
 */

/**
 * A member's handle on its group.
 * @typedef {object} GroupHandle
 * @property {Group} group
 * @property {SyncMode} mode
 * @property {number | null} position
 * @property {() => StepsInfo[]} infos every member's steps
 * @property {() => number} size
 * @property {(position: number) => void} broadcast move the others
 * @property {(mode: string) => void} setMode switch every member
 * @property {() => void} leave
 */

/** @returns {Map<string, Group>} */
function groups() {
  const g = /** @type {Record<symbol, Map<string, Group> | undefined>} */ (
    /** @type {unknown} */ (globalThis));
  if (!g[KEY]) g[KEY] = new Map();
  return g[KEY];
}

/**
 * @param {unknown} mode
 * @returns {mode is SyncMode}
 */
export function isSyncMode(mode) {
  return SYNC_MODES.includes(/** @type {SyncMode} */ (mode));
}

/**
 * Join group `name` (created with `mode` if new).
 * @param {string} name @param {Member} member @param {unknown} mode
 * @returns {GroupHandle}
 */
export function joinGroup(name, member, mode) {
  const all = groups();
  let group = all.get(name);
  if (!group) {
    group = { name, members: new Set(), mode: isSyncMode(mode) ? mode : "normalized",
      position: null };
    all.set(name, group);
  }
  const g = group;
  g.members.add(member);
  /** @param {(m: Member) => void} fn */
  const each = (fn) => { for (const m of [...g.members]) fn(m); };
  /** @type {GroupHandle} */
  const handle = {
    group: g,
    get mode() { return g.mode; },
    get position() { return g.position; },
    infos: () => [...g.members].map((m) => m.info()).filter((i) => i !== null),
    size: () => g.members.size,
    broadcast(position) {
      g.position = position;
      each((m) => { if (m !== member) m.onPosition(position, member); });
    },
    setMode(next) {
      if (!isSyncMode(next) || next === g.mode) return;
      g.mode = next;
      each((m) => m.onMode(next));
    },
    leave() {
      g.members.delete(member);
      if (!g.members.size) all.delete(name);
      else each((m) => m.refresh());
    },
  };
  each((m) => { if (m !== member) m.refresh(); }); // the shared axis may have grown
  return handle;
}
