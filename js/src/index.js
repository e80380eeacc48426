// @ts-check
// anywidget entry (AFM): one view per `render`; the returned function cleans it up (stops
// playback, removes the model and key listeners and the DOM).
import "./widget.css";
import { TimelineView } from "./view.js";
/** @import { Model } from "./types.js" */

export default {
  /** @param {{model: Model, el: HTMLElement}} props */
  render({ model, el }) {
    const view = new TimelineView(model, el);
    return () => view.destroy();
  },
};
