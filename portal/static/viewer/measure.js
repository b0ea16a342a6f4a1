/* Overread viewer: the distance tool. Drag a line, or tap its two ends; the length in mm
 * comes from Pixel Spacing (row, column) in the original pixel grid, so it is right whatever
 * size the server rendered and however far the image is zoomed. Imager Pixel Spacing is
 * flagged; without any spacing nothing is measured, and the reader is told why. Lines belong
 * to the image they were drawn on, live in memory only and are never saved.
 */

export const NO_SPACING = "No pixel spacing in this image: distances cannot be measured.";
const MIN_LINE_PX = 8;

export class Ruler {
  /**
   * @param stage the Stage (screen <-> image points, drawing)
   * @param current () => the item on screen ({key, instance})
   * @param say a Toast: show(text), announce(text)
   */
  constructor(stage, current, say) {
    this.stage = stage;
    this.current = current;
    this.say = say;
    this.lines = new Map(); // item key -> [{a, b, label}]
    this.draft = null;
    this.pending = null;
  }

  clear() {
    this.lines.clear();
    this.draft = null;
    this.pending = null;
  }

  usable() {
    if (this.current().instance.spacing) return true;
    this.say.show(NO_SPACING);
    return false;
  }

  start(point) {
    if (!this.usable()) return;
    const at = this.stage.toImage(point.x, point.y);
    this.pending = null;
    this.draft = { a: at, b: at };
  }

  move(point) {
    if (!this.draft) return;
    this.draft.b = this.stage.toImage(point.x, point.y);
    this.draft.label = this.label(this.draft);
    this.draw();
  }

  end(point) {
    if (!this.draft) return;
    this.move(point);
    const line = this.draft;
    this.draft = null;
    this.keep(line);
  }

  cancel() {
    this.draft = null;
    this.draw();
  }

  /** The first tap marks one end, the second draws the line. */
  tap(point) {
    if (!this.usable()) return;
    const at = this.stage.toImage(point.x, point.y);
    if (!this.pending) {
      this.pending = at;
      this.draw();
      return;
    }
    const line = { a: this.pending, b: at };
    line.label = this.label(line);
    this.pending = null;
    this.keep(line);
  }

  keep(line) {
    const a = this.stage.toScreen(line.a);
    const b = this.stage.toScreen(line.b);
    if (Math.hypot(a.x - b.x, a.y - b.y) >= MIN_LINE_PX) {
      const key = this.current().key;
      this.lines.set(key, [...(this.lines.get(key) || []), line]);
      this.say.announce(`Distance ${line.label}`);
    }
    this.draw();
  }

  label(line) {
    const { spacing, spacing_kind: kind } = this.current().instance;
    const [rowMm, colMm] = spacing;
    const mm = Math.hypot((line.b.x - line.a.x) * colMm, (line.b.y - line.a.y) * rowMm);
    return `${mm.toFixed(mm < 10 ? 2 : 1)} mm${kind === "imager" ? " (imager spacing)" : ""}`;
  }

  draw() {
    const lines = [...(this.lines.get(this.current().key) || [])];
    if (this.draft) lines.push(this.draft);
    this.stage.drawMarks(lines, this.pending);
  }
}
