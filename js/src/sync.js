// Synchronized replay: Timeline views with the same `sync` group scrub together, in the browser
// only (no kernel round trip, so it works in the offline HTML page too).
//
// The registry lives on globalThis under a Symbol.for key, not in a module variable: anywidget
// may import the bundle once per widget (each import is a separate module instance), and every
// view of the page must see the same groups. Nothing else is put on the page.
import { SYNC_MODES } from "./timeline.js";

const KEY = Symbol.for("dgviz.sync-groups.v1");

function groups() {
  if (!globalThis[KEY]) globalThis[KEY] = new Map();
  return globalThis[KEY];
}

/**
 * Join group `name`. `member` has: info() -> stepsInfo, onPosition(position, source),
 * onMode(mode), refresh(). Returns the group handle with leave(), broadcast(), setMode().
 */
export function joinGroup(name, member, mode) {
  const all = groups();
  let group = all.get(name);
  if (!group) {
    group = { name, members: new Set(), mode: SYNC_MODES.includes(mode) ? mode : "normalized", position: null };
    all.set(name, group);
  }
  group.members.add(member);
  const each = (fn) => { for (const m of [...group.members]) fn(m); };
  const handle = {
    group,
    get mode() { return group.mode; },
    get position() { return group.position; },
    infos: () => [...group.members].map((m) => m.info()).filter(Boolean),
    size: () => group.members.size,
    broadcast(position) {
      group.position = position;
      each((m) => { if (m !== member) m.onPosition(position, member); });
    },
    setMode(next) {
      if (!SYNC_MODES.includes(next) || next === group.mode) return;
      group.mode = next;
      each((m) => m.onMode(next));
    },
    leave() {
      group.members.delete(member);
      if (!group.members.size) all.delete(name);
      else each((m) => m.refresh());
    },
  };
  each((m) => { if (m !== member) m.refresh(); }); // the shared axis may have grown
  return handle;
}
