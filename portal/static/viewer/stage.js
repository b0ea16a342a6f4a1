/* Overread viewer: the image area. One canvas shows the current frame, placed by a CSS
 * transform (zoom 1 = the whole image fits); an SVG filter previews window/level and invert
 * on the pixels already shown; an SVG layer draws measurements in screen space.
 *
 * Coordinates: "image" points are in the original DICOM pixel grid (columns x rows), whatever
 * size the server rendered, so distances use Pixel Spacing directly; "screen" points are CSS
 * pixels from the stage's top-left corner.
 */

const SVG = "http://www.w3.org/2000/svg";
const MIN_ZOOM = 0.5;
const MAX_ZOOM = 24;

export class Stage {
  constructor(element) {
    this.element = element;
    this.canvas = element.querySelector("canvas");
    this.context = this.canvas.getContext("2d");
    this.marks = element.querySelector(".vw-marks");
    this.funcs = [...document.querySelectorAll("#vw-wl feFuncR, #vw-wl feFuncG, #vw-wl feFuncB")];
    this.width = 1;
    this.height = 1;
    this.cols = 1;
    this.rows = 1;
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
    this.painted = 0;
    this.measure();
  }

  /** Read the stage's size (after a rotation or a resize); keeps zoom and pan. */
  measure() {
    const box = this.element.getBoundingClientRect();
    this.width = Math.max(1, box.width);
    this.height = Math.max(1, box.height);
    this.marks.setAttribute("viewBox", `0 0 ${this.width} ${this.height}`);
    this.apply();
  }

  /** Draw ``bitmap`` as an image of ``cols`` x ``rows`` original pixels. */
  paint(bitmap, cols, rows) {
    if (this.canvas.width !== bitmap.width || this.canvas.height !== bitmap.height) {
      this.canvas.width = bitmap.width;
      this.canvas.height = bitmap.height;
    }
    this.context.drawImage(bitmap, 0, 0);
    this.painted += 1;
    this.canvas.dataset.painted = String(this.painted);
    if (cols !== this.cols || rows !== this.rows) {
      this.cols = cols;
      this.rows = rows;
      this.apply();
    }
  }

  /** Blank the canvas (a new series is opening). */
  clear() {
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /** Preview a window/level change: output = slope * input + intercept on each channel. */
  filter(slope, intercept) {
    const identity = Math.abs(slope - 1) < 1e-4 && Math.abs(intercept) < 1e-4;
    for (const func of this.funcs) {
      func.setAttribute("slope", String(slope));
      func.setAttribute("intercept", String(intercept));
    }
    this.canvas.style.filter = identity ? "" : "url(#vw-wl)";
  }

  /** CSS pixels per original image pixel. */
  scale() {
    return Math.min(this.width / this.cols, this.height / this.rows) * this.zoom;
  }

  toImage(sx, sy) {
    const s = this.scale();
    return {
      x: (sx - this.width / 2 - this.panX) / s + this.cols / 2,
      y: (sy - this.height / 2 - this.panY) / s + this.rows / 2,
    };
  }

  toScreen(point) {
    const s = this.scale();
    return {
      x: (point.x - this.cols / 2) * s + this.width / 2 + this.panX,
      y: (point.y - this.rows / 2) * s + this.height / 2 + this.panY,
    };
  }

  /** Zoom by ``factor`` keeping the image point under (sx, sy) where it is. */
  zoomAt(factor, sx, sy) {
    const zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.zoom * factor));
    const applied = zoom / this.zoom;
    const cx = sx - this.width / 2;
    const cy = sy - this.height / 2;
    this.panX = cx - (cx - this.panX) * applied;
    this.panY = cy - (cy - this.panY) * applied;
    this.zoom = zoom;
    this.apply();
  }

  panBy(dx, dy) {
    this.panX += dx;
    this.panY += dy;
    this.apply();
  }

  fit() {
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
    this.apply();
  }

  /** The view as fractions of the stage, to keep across reloads and rotations. */
  view() {
    return { zoom: this.zoom, x: this.panX / this.width, y: this.panY / this.height };
  }

  restore(view) {
    this.zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, view.zoom || 1));
    this.panX = (view.x || 0) * this.width;
    this.panY = (view.y || 0) * this.height;
    this.apply();
  }

  apply() {
    const s = this.scale();
    const tx = this.width / 2 + this.panX - (this.cols * s) / 2;
    const ty = this.height / 2 + this.panY - (this.rows * s) / 2;
    const style = this.canvas.style;
    style.width = `${this.cols}px`;
    style.height = `${this.rows}px`;
    style.transform = `translate(${tx}px, ${ty}px) scale(${s})`;
    this.canvas.dataset.zoom = this.zoom.toFixed(3);
    if (this.onchange) this.onchange();
  }

  /** Draw measurement lines ({a, b, label} in image points) and a pending first point. */
  drawMarks(lines, pending) {
    const nodes = [];
    for (const line of lines) nodes.push(...this.lineNodes(line));
    if (pending) nodes.push(dot(this.toScreen(pending)));
    this.marks.replaceChildren(...nodes);
  }

  lineNodes(line) {
    const a = this.toScreen(line.a);
    const b = this.toScreen(line.b);
    const nodes = [];
    for (const kind of ["halo", "ink"]) {
      nodes.push(svg("line", { class: `vw-line-${kind}`, x1: a.x, y1: a.y, x2: b.x, y2: b.y }));
    }
    nodes.push(dot(a), dot(b));
    if (line.label) nodes.push(label(line.label, a, b, this.width, this.height));
    return nodes;
  }
}

function svg(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

function dot(point) {
  return svg("circle", { class: "vw-dot", cx: point.x, cy: point.y, r: 5 });
}

/** The distance, under the line's lower end (above its upper end near the bottom edge). */
function label(text, a, b, width, height) {
  const x = Math.min(width - 8, Math.max(8, (a.x + b.x) / 2));
  const below = Math.max(a.y, b.y) + 24;
  const y = below < height - 8 ? below : Math.min(a.y, b.y) - 12;
  const anchor = x < width * 0.25 ? "start" : x > width * 0.75 ? "end" : "middle";
  const node = svg("text", { class: "vw-label", x, y, "text-anchor": anchor });
  node.textContent = text;
  return node;
}
