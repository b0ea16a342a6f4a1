/* Overread viewer: the text in the image's corners (toggled with one tap) and the toast. */

import { round } from "./windowing.js";

/**
 * Write the four corners for what is on screen.
 * @param corners {tl, tr, bl, br} elements
 * @param shown {series, item, index, window (known numbers or null), zoom, invert}
 */
export function writeCorners(corners, shown) {
  const { series, item, window } = shown;
  const instance = item.instance;
  const image = instance.frames > 1 ? `Frame ${item.frame} / ${instance.frames}`
    : `Image ${instance.number ?? shown.index + 1}`;
  const windowText = window
    ? `W ${round(window.width, 1)}  L ${round(window.center, 1)}${window.name ? ` · ${window.name}` : ""}`
    : "W/L auto";
  lines(corners.tl, [series.description || "No description", series.label]);
  lines(corners.tr, [image]);
  lines(corners.bl, [position(instance), thickness(instance), spacing(instance)]);
  const zoomText = `Zoom ${Math.round(shown.zoom * 100)}%${shown.invert ? " · inverted" : ""}`;
  lines(corners.br, [windowText, zoomText]);
}

function lines(element, texts) {
  element.replaceChildren(
    ...texts.filter(Boolean).map((text) => {
      const line = document.createElement("span");
      line.textContent = text;
      return line;
    }),
  );
}

function position(instance) {
  if (instance.slice_location !== null && instance.slice_location !== undefined) {
    return `Loc ${round(instance.slice_location, 1)} mm`;
  }
  return instance.position ? `Pos ${instance.position.map((v) => round(v, 1)).join(", ")}` : "";
}

function thickness(instance) {
  return instance.thickness ? `Thk ${round(instance.thickness, 2)} mm` : "";
}

function spacing(instance) {
  if (!instance.spacing) return "No pixel spacing";
  const [row, col] = instance.spacing.map((v) => round(v, 3));
  return `${row} × ${col} mm${instance.spacing_kind === "imager" ? " (imager)" : ""}`;
}

/** A short message over the image (also read out: the element is a live region). */
export class Toast {
  constructor(element) {
    this.element = element;
    this.timer = 0;
  }

  show(text) {
    this.element.textContent = text;
    this.element.classList.add("show");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.element.classList.remove("show"), 2800);
  }

  /** Tell assistive technology without showing anything. */
  announce(text) {
    this.element.textContent = text;
  }
}
