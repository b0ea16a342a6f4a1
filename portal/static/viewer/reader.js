/* Overread viewer: one series open full-screen. Scrolls the stack, keeps the window/level,
 * invert, zoom and the tool, and hands measuring, cine and the overlay text to their modules.
 * Frames come from a FrameStore; the canvas is a Stage.
 */

import { attachGestures, readerHandlers } from "./gestures.js";
import { Cine, Presets, Scrubber } from "./controls.js";
import { Ruler } from "./measure.js";
import { Toast, writeCorners } from "./overlay.js";
import { Stage } from "./stage.js";
import { AUTO, draggedWindow, frameUrl, previewFilter, round, savedWindow } from "./windowing.js";

const SIZES = [256, 384, 512, 768, 1024, 1536, 2048]; // the server renders at most 2048
const DECODE_AHEAD = 11; // the current image and five either side
const WL_SETTLE_MS = 200;
const FIRST_IMAGE = "overread:first-image"; // a performance mark, for the benchmark

const $ = (root, selector) => root.querySelector(selector);

export class Reader {
  constructor(element, store, onChange) {
    this.element = element;
    this.store = store;
    this.onChange = onChange;
    this.series = null;
    this.fallback = new Map(); // item key -> the last frame fetched for it {url, window}
    this.stage = new Stage($(element, ".vw-stage"));
    this.stage.onchange = () => this.viewChanged();
    this.toast = new Toast($(element, ".vw-toast"));
    this.ruler = new Ruler(this.stage, () => this.item(), this.toast);
    this.scrubber = new Scrubber($(element, ".vw-scrub"), (index) => this.go(index));
    this.cine = new Cine(element, () => this.nextFrame(), () => this.prefetchSoon());
    this.presets = new Presets($(element, ".vw-presets"), (preset) => this.choosePreset(preset));
    this.count = $(element, ".vw-count");
    this.corners = Object.fromEntries(["tl", "tr", "bl", "br"].map((c) => [c, $(element, `.vw-${c}`)]));
    this.wire();
  }

  wire() {
    attachGestures(this.stage.element, readerHandlers(this));
    for (const button of this.element.querySelectorAll("[data-tool]")) {
      button.addEventListener("click", () => this.setTool(button.dataset.tool));
    }
    const on = (selector, action) => $(this.element, selector).addEventListener("click", action);
    on(".vw-invert", () => this.setInvert(!this.invert));
    on(".vw-reset", () => this.reset());
    on(".vw-info", () => this.setOverlay(!this.overlay));
    new ResizeObserver(() => {
      if (!this.series) return;
      this.stage.measure();
      this.maybeUpsize();
    }).observe(this.stage.element);
  }

  // --- opening and the saved place ---------------------------------------------------------
  /** Show ``series``, at the place ``saved`` (a state() from before) when given. */
  open(series, saved = {}) {
    this.series = series;
    this.index = clamp(saved.i ?? 0, 0, series.items.length - 1);
    this.window = savedWindow(saved);
    this.invert = Boolean(saved.inv);
    this.direction = 1;
    this.size = 0;
    this.shownWindow = null;
    this.ruler.clear();
    $(this.element, ".vw-title").textContent = series.description || "No description";
    $(this.element, ".vw-sub").textContent = series.label;
    this.presets.show(series.presets, this.window && this.window.name);
    this.cine.setup(series);
    this.setTool(saved.t || "scroll", true);
    this.setOverlay(saved.ov !== 0, true);
    this.setInvert(this.invert, true);
    this.stage.measure();
    this.stage.clear();
    const { columns, rows } = this.item().instance;
    Object.assign(this.stage, { cols: columns || 512, rows: rows || 512 });
    this.stage.restore({ zoom: saved.z, x: saved.x, y: saved.y });
    this.stage.element.focus({ preventScroll: true });
    this.update();
  }

  close() {
    this.cine.pause();
    this.series = null;
  }

  /** Where the reader is: image, view, window, invert, tool, overlay (for the URL fragment). */
  state() {
    const view = this.stage.view();
    const state = { i: this.index, z: round(view.zoom, 3), x: round(view.x, 3), y: round(view.y, 3) };
    const window = this.window;
    if (window && window !== AUTO) {
      Object.assign(state, { wc: round(window.center, 2), ww: round(window.width, 2) });
    }
    if (window && window.name) state.wn = window.name;
    if (this.invert) state.inv = 1;
    if (this.tool !== "scroll") state.t = this.tool;
    if (!this.overlay) state.ov = 0;
    return state;
  }

  item(index = this.index) {
    return this.series.items[index];
  }

  // --- the stack ---------------------------------------------------------------------------
  go(index, direction) {
    index = clamp(index, 0, this.series.items.length - 1);
    if (index === this.index) return;
    this.direction = direction || Math.sign(index - this.index);
    this.index = index;
    this.ruler.pending = null;
    this.update();
  }

  step(delta) {
    this.go(this.index + delta, Math.sign(delta));
  }

  update() {
    if (!this.size) this.size = this.neededSize();
    const total = this.series.items.length;
    this.count.textContent = `${this.index + 1} / ${total}`;
    this.scrubber.set(this.index, total - 1);
    this.refresh();
  }

  /** Repaint, fetch what is wanted now (after a move, a window or a size change), save. */
  refresh() {
    this.paint();
    this.prefetchSoon();
    this.writeOverlay();
    this.onChange();
  }

  url(item) {
    return frameUrl(item, this.size || this.neededSize(), this.window);
  }

  /** The render size the screen needs now (device pixels), never shrinking for a series. */
  neededSize() {
    const { columns, rows } = this.item().instance;
    const full = Math.max(columns || 0, rows || 0) || SIZES[SIZES.length - 1];
    const want = full * this.stage.scale() * (window.devicePixelRatio || 1);
    const size = SIZES.find((step) => step >= want) || full;
    return Math.max(this.size || 0, Math.min(full, size));
  }

  maybeUpsize() {
    const size = this.neededSize();
    if (size > this.size) {
      this.size = size;
      this.refresh();
    }
  }

  /** Draw the wanted frame, or meanwhile the same image fetched before (another window or
   * size, previewed through the filter), or keep the last one with a spinner. */
  paint() {
    const item = this.item();
    const url = this.url(item);
    let bitmap = this.store.bitmap(url);
    let rendered = this.knownWindow(item);
    if (bitmap) {
      this.fallback.set(item.key, { url, window: rendered });
    } else {
      this.store.decode(url);
      const old = this.fallback.get(item.key);
      bitmap = old && this.store.bitmap(old.url);
      if (bitmap) rendered = old.window;
    }
    this.stage.element.classList.toggle("vw-loading", !this.store.bitmap(url));
    if (bitmap) {
      this.stage.paint(bitmap, item.instance.columns || bitmap.width, item.instance.rows || bitmap.height);
      this.shownWindow = rendered;
      if (!performance.getEntriesByName(FIRST_IMAGE).length) performance.mark(FIRST_IMAGE);
    }
    this.applyFilter();
    this.ruler.draw();
  }

  /** A frame landed: repaint if it is the one on screen. */
  ready(url) {
    if (!this.series || url !== this.url(this.item()) || this.paintQueued) return;
    this.paintQueued = true;
    requestAnimationFrame(() => {
      this.paintQueued = false;
      if (this.series) this.paint();
    });
  }

  /** A frame could not be fetched (after retries): say so if it is the one wanted now. */
  failed(url) {
    if (!this.series || url !== this.url(this.item())) return;
    this.stage.element.classList.remove("vw-loading");
    this.toast.show("This image could not be loaded.");
  }

  prefetchSoon() {
    if (this.prefetchQueued) return;
    this.prefetchQueued = true;
    requestAnimationFrame(() => {
      this.prefetchQueued = false;
      if (this.series) this.prefetch();
    });
  }

  /** The current image, then outwards (the way the reader is going first), then the rest;
   * while a cine plays, the frames that come next in the loop first. */
  prefetch() {
    const total = this.series.items.length;
    const order = this.cine.playing ? this.loopOrder() : [this.index];
    const listed = new Set(order);
    for (let distance = 1; listed.size < total; distance += 1) {
      for (const index of [this.index + this.direction * distance, this.index - this.direction * distance]) {
        if (index >= 0 && index < total && !listed.has(index)) {
          listed.add(index);
          order.push(index);
        }
      }
    }
    this.store.schedule(order.map((index) => this.url(this.item(index))), DECODE_AHEAD);
  }

  // --- cine --------------------------------------------------------------------------------
  /** The current object's frames from the current one on, wrapping round. */
  loopOrder() {
    const { frame, instance } = this.item();
    const first = this.index - frame + 1;
    return Array.from({ length: instance.frames }, (_, k) => first + ((frame - 1 + k) % instance.frames));
  }

  /** Show the next frame of the current object (looping), once it is decoded. */
  nextFrame() {
    const [, next] = this.loopOrder();
    if (next === undefined) return true;
    const url = this.url(this.item(next));
    if (!this.store.bitmap(url)) {
      this.store.decode(url);
      return false;
    }
    this.go(next, 1);
    return true;
  }

  // --- window/level, invert, overlay, tools ---------------------------------------------------
  /** The window the image is shown with, when its numbers are known (not "auto"). */
  knownWindow(item) {
    if (this.window === AUTO) return null;
    return this.window || item.defaultWindow;
  }

  /** Preview the window and invert on the pixels shown, until the right ones arrive. */
  applyFilter() {
    const { slope, intercept } = previewFilter(this.shownWindow, this.knownWindow(this.item()), this.invert);
    this.stage.filter(slope, intercept);
  }

  wlStart() {
    if (!this.series.windowable) return;
    this.wlBase = this.knownWindow(this.item()) || this.series.guessWindow;
    clearTimeout(this.wlTimer);
  }

  wlDrag(dx, dy) {
    if (!this.wlBase) return;
    this.window = draggedWindow(this.wlBase, dx, dy, this.stage.width, this.stage.height);
    this.presets.mark(null);
    this.applyFilter();
    this.writeOverlay();
  }

  /** Fetch the properly rendered frames once the finger has rested a moment. */
  wlEnd() {
    if (!this.wlBase) return;
    this.wlBase = null;
    clearTimeout(this.wlTimer);
    this.wlTimer = setTimeout(() => this.series && this.refresh(), WL_SETTLE_MS);
  }

  choosePreset(preset) {
    const known = preset.width > 0 && preset.center !== null && preset.center !== undefined;
    this.window = known ? { center: preset.center, width: preset.width, name: preset.name } : AUTO;
    this.refresh();
  }

  setTool(tool, quiet) {
    if (tool === "wl" && !this.series.windowable) {
      if (!quiet) this.toast.show("Window/level does not apply to colour images.");
      tool = "scroll";
    }
    this.tool = tool;
    for (const button of this.element.querySelectorAll("[data-tool]")) {
      button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
    }
    this.presets.element.hidden = tool !== "wl" || !this.series.presets.length;
    this.stage.element.dataset.tool = tool;
    this.ruler.pending = null;
    this.ruler.draw();
    if (quiet) return;
    if (tool === "measure") this.ruler.usable();
    this.onChange();
  }

  setInvert(invert, quiet) {
    this.invert = invert;
    $(this.element, ".vw-invert").setAttribute("aria-pressed", String(invert));
    if (quiet) return;
    this.applyFilter();
    this.writeOverlay();
    this.onChange();
  }

  setOverlay(visible, quiet) {
    this.overlay = visible;
    this.element.classList.toggle("vw-no-overlay", !visible);
    $(this.element, ".vw-info").setAttribute("aria-pressed", String(visible));
    if (!quiet) this.onChange();
  }

  /** Back to the file's window, no invert, fitted, no measurements; the tool stays. */
  reset() {
    this.window = null;
    this.ruler.clear();
    this.setInvert(false, true);
    this.presets.mark(null);
    this.stage.fit();
    this.refresh();
    this.toast.show("View reset");
  }

  writeOverlay() {
    const item = this.item();
    writeCorners(this.corners, {
      series: this.series,
      item,
      index: this.index,
      window: this.knownWindow(item),
      zoom: this.stage.zoom,
      invert: this.invert,
    });
  }

  viewChanged() {
    if (!this.series) return;
    this.ruler.draw();
    this.writeOverlay();
    this.onChange();
  }

  /** The session ended (or the server refused): say so over the image. */
  refused() {
    this.cine.pause();
    $(this.element, ".vw-ended").hidden = false;
  }
}

function clamp(value, low, high) {
  return Math.min(high, Math.max(low, Number.isFinite(value) ? value : low));
}
