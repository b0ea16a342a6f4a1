/* Overread viewer: the entry point on /viewer/<number>.
 *
 * Loads the case's manifest, lays the studies' series out as strips of thumbnails, and opens
 * one series full-screen (a history entry, so the phone's back button closes it). Where the
 * reader is (series, image, zoom, pan, window, invert, tool, overlay) is kept in the URL
 * fragment and in sessionStorage, never sent to the server, and restored on reload or on
 * coming back to this page; the report opens in a new tab, so the place is not even left.
 * No patient details go into the fragment or the storage: indexes and numbers only.
 */

import { FrameStore } from "./store.js";
import { Reader } from "./reader.js";
import { defaultFps } from "./controls.js";
import { readerKey } from "./gestures.js";

const SAVE_MS = 250;

const root = document.getElementById("vw-root");
const viewerElement = document.getElementById("vw");
if (root && viewerElement) start();

async function start() {
  let manifest;
  try {
    const response = await fetch(root.dataset.manifest, { credentials: "same-origin" });
    if (!response.ok) {
      const refusal = await response.json().catch(() => ({}));
      throw new Error(refusal.message || `HTTP ${response.status}`);
    }
    manifest = await response.json();
  } catch (error) {
    say(`The images could not be loaded: ${error.message}`);
    return;
  }
  const series = seriesOf(manifest);
  const app = new Viewer(series);
  drawStrips(manifest, series, (index) => app.open(index, {}, true));
  say(series.length ? "Open a series to read it full-screen." : "No images are attached to this case.");
  app.restore();
}

function say(text) {
  const hint = document.getElementById("vw-hint");
  hint.textContent = text;
  hint.hidden = !text;
}

// --- the manifest --------------------------------------------------------------------------
/** One entry per series, in manifest order, with its images flattened (instance x frame). */
function seriesOf(manifest) {
  const all = [];
  for (const study of manifest.studies) {
    for (const series of study.series) {
      const items = [];
      for (const instance of series.instances) {
        const defaultWindow = instance.windows && instance.windows.length ? instance.windows[0] : null;
        for (let frame = 1; frame <= Math.max(1, instance.frames || 1); frame += 1) {
          items.push({ instance, frame, key: `${instance.uid}/${frame}`, defaultWindow });
        }
      }
      if (!items.length) continue;
      const multiframe = series.instances.find((instance) => instance.frames > 1);
      all.push({
        index: all.length,
        description: series.description,
        label: [series.number !== null && series.number !== undefined ? `Series ${series.number}` : "Series",
          series.modality, series.body_part].filter(Boolean).join(" · "),
        modality: series.modality,
        number: series.number,
        images: series.images ?? series.instances.length,
        thumbnail: series.thumbnail,
        presets: series.presets || [],
        // The server offers no presets for colour images, where a window means nothing.
        windowable: Boolean((series.presets || []).length),
        items,
        cine: Boolean(multiframe),
        fps: defaultFps(multiframe && multiframe.frame_time_ms, series.modality),
        guessWindow: guessWindow(series),
      });
    }
  }
  return all;
}

/** Where a window/level drag starts when the file has no window of its own. */
function guessWindow(series) {
  const preset = (series.presets || []).find((p) => p.width > 0);
  if (preset) return { center: preset.center, width: preset.width };
  return series.modality === "CT" ? { center: 40, width: 400 } : { center: 128, width: 256 };
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== ""));
  return node;
}

function drawStrips(manifest, series, open) {
  const box = document.getElementById("vw-studies");
  let index = 0;
  const articles = manifest.studies.map((study, studyIndex) => {
    const strip = element("ul", { class: "vw-strip", "aria-label": `Series of study ${studyIndex + 1}` });
    for (const entry of study.series) {
      if (!entry.instances.length) continue;
      strip.append(element("li", {}, seriesButton(series[index], open)));
      index += 1;
    }
    const modalities = study.series.map((s) => s.modality).filter(unique).join("/");
    const facts = [modalities, study.date].filter(Boolean);
    return element("article", { class: "vw-study" },
      element("h3", {}, study.description || "Study without description", " ",
        element("span", { class: "muted" }, facts.join(", "))),
      strip);
  });
  box.replaceChildren(...articles);
  box.setAttribute("aria-busy", "false");
}

function seriesButton(entry, open) {
  const count = entry.cine ? `${entry.items.length} frames`
    : `${entry.images} ${entry.images === 1 ? "image" : "images"}`;
  const image = element("img", { alt: "", width: "96", height: "96", decoding: "async" });
  if (entry.thumbnail) image.src = entry.thumbnail;
  const button = element("button", {
    type: "button", class: "vw-series", "data-series": String(entry.index),
    "aria-label": `Open ${entry.label}: ${entry.description || "no description"}, ${count}`,
  },
  element("span", { class: "vw-thumb" }, image,
    entry.cine ? element("span", { class: "vw-cine-badge" }, "cine") : null),
  element("span", { class: "vw-series-name" }, entry.description || "No description"),
  element("span", { class: "vw-series-meta" }, `${entry.label.replace("Series ", "S")} · ${count}`));
  button.addEventListener("click", () => open(entry.index));
  return button;
}

function unique(value, index, all) {
  return all.indexOf(value) === index;
}

// --- the full-screen viewer, history and the saved place --------------------------------------
class Viewer {
  constructor(series) {
    this.series = series;
    this.current = null;
    this.storageKey = `overread.viewer.${root.dataset.case}`;
    this.store = new FrameStore({
      onReady: (url) => this.reader.ready(url),
      onFailed: (url) => this.reader.failed(url),
      onDenied: () => this.reader.refused(),
    });
    this.reader = new Reader(viewerElement, this.store, () => this.saveSoon());
    viewerElement.querySelector(".vw-back").addEventListener("click", () => this.back());
    const report = viewerElement.querySelector(".vw-report");
    if (report) report.addEventListener("click", () => this.save());
    window.addEventListener("popstate", () => this.followHistory());
    window.addEventListener("pagehide", () => this.save());
    document.addEventListener("keydown", (event) => this.key(event));
  }

  /** Open series ``index``; ``push`` makes a history entry for the back button to close. */
  open(index, saved, push) {
    const entry = this.series[index];
    if (!entry) return;
    this.current = index;
    this.setPageInert(true);
    viewerElement.hidden = false;
    document.documentElement.classList.add("vw-open");
    this.reader.open(entry, saved);
    if (push) history.pushState({ viewer: index }, "", `#${fragment(index, this.reader.state())}`);
  }

  hide() {
    if (this.current === null) return;
    const index = this.current;
    this.current = null;
    this.reader.close();
    viewerElement.hidden = true;
    document.documentElement.classList.remove("vw-open");
    this.setPageInert(false);
    const button = document.querySelector(`.vw-series[data-series="${index}"]`);
    if (button) button.focus({ preventScroll: false });
    this.save();
  }

  back() {
    if (history.state && history.state.viewer !== undefined) history.back();
    else this.hide();
  }

  followHistory() {
    const saved = parseFragment(location.hash);
    if (saved && this.series[saved.s]) {
      if (this.current !== saved.s) this.open(saved.s, saved, false);
    } else {
      this.hide();
    }
  }

  /** On load: the fragment's place, else this tab's last place for this case. */
  restore() {
    let saved = parseFragment(location.hash);
    if (!saved) {
      try {
        saved = JSON.parse(sessionStorage.getItem(this.storageKey) || "null");
      } catch {
        saved = null;
      }
    }
    if (!saved || !this.series[saved.s]) return;
    history.replaceState(null, "", location.pathname + location.search);
    this.open(saved.s, saved, true);
  }

  saveSoon() {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => this.save(), SAVE_MS);
  }

  save() {
    clearTimeout(this.saveTimer);
    this.saveTimer = 0;
    const state = this.current === null ? { s: null } : { s: this.current, ...this.reader.state() };
    try {
      sessionStorage.setItem(this.storageKey, JSON.stringify(state));
    } catch {
      // storage full or disabled: the fragment still holds the place
    }
    if (this.current !== null && history.state && history.state.viewer === this.current) {
      history.replaceState(history.state, "", `#${fragment(this.current, this.reader.state())}`);
    }
  }

  key(event) {
    if (this.current === null || event.defaultPrevented) return;
    if (event.altKey || event.metaKey || event.ctrlKey) return;
    if (event.target.closest && event.target.closest("input, textarea, select, [role=slider]")) return;
    if (event.key === "Escape") {
      this.back();
    } else if (!readerKey(this.reader, event)) {
      return;
    }
    event.preventDefault();
  }

  setPageInert(inert) {
    for (const node of [document.querySelector(".topbar"), ...viewerElement.parentElement.children]) {
      if (node && node !== viewerElement) node.inert = inert;
    }
  }
}

// --- the fragment: #s=0&i=10&z=1.5&x=0&y=0&wc=40&ww=400&wn=Brain&inv=1&t=wl&ov=0 -------------
const NUMBERS = ["s", "i", "z", "x", "y", "wc", "ww", "inv", "ov"];

function fragment(index, state) {
  const params = new URLSearchParams({ s: String(index) });
  for (const [key, value] of Object.entries(state)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  return params.toString();
}

function parseFragment(hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  if (!params.has("s")) return null;
  const saved = {};
  for (const [key, value] of params) saved[key] = NUMBERS.includes(key) ? Number(value) : value;
  return Number.isInteger(saved.s) ? saved : null;
}
