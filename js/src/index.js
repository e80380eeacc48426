// anywidget entry (AFM): one view per `render`; the returned function cleans it up (cancels the
// playback animation frame, removes model listeners and the DOM).
import "./widget.css";
import { TimelineView } from "./view.js";

// For the offline HTML page's model shim (dgviz/html.py): base64 array data -> bytes.
export { unpackBase64Tree } from "./codec.js";

export default {
  render({ model, el }) {
    const view = new TimelineView(model, el);
    return () => view.destroy();
  },
};
