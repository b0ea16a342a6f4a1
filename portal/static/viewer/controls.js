/* Overread viewer: the stack scrubber (a vertical slider at the thumb's edge), the window
 * presets and the cine bar for multi-frame objects.
 */

/** A vertical slider: top = first image. Drag anywhere on it, or use the keys. */
export class Scrubber {
  constructor(element, onInput) {
    this.element = element;
    this.thumb = element.querySelector(".vw-scrub-thumb");
    this.onInput = onInput;
    this.value = 0;
    this.max = 0;
    element.addEventListener("pointerdown", (event) => this.down(event));
    element.addEventListener("pointermove", (event) => this.drag(event));
    element.addEventListener("pointerup", (event) => this.up(event));
    element.addEventListener("pointercancel", (event) => this.up(event));
    element.addEventListener("keydown", (event) => this.key(event));
  }

  set(value, max) {
    this.value = value;
    this.max = max;
    this.element.hidden = max < 1;
    this.element.setAttribute("aria-valuemax", String(max + 1));
    this.element.setAttribute("aria-valuenow", String(value + 1));
    this.element.setAttribute("aria-valuetext", `Image ${value + 1} of ${max + 1}`);
    const fraction = max ? value / max : 0;
    this.thumb.style.top = `calc(${fraction * 100}% - ${fraction * 44}px)`;
  }

  down(event) {
    event.preventDefault();
    event.stopPropagation();
    this.element.setPointerCapture(event.pointerId);
    this.dragging = event.pointerId;
    this.element.classList.add("active");
    this.drag(event);
  }

  drag(event) {
    if (this.dragging !== event.pointerId) return;
    const box = this.element.getBoundingClientRect();
    const fraction = Math.min(1, Math.max(0, (event.clientY - box.top - 22) / Math.max(1, box.height - 44)));
    const value = Math.round(fraction * this.max);
    if (value !== this.value) this.onInput(value);
  }

  up(event) {
    if (this.dragging !== event.pointerId) return;
    this.dragging = null;
    this.element.classList.remove("active");
  }

  key(event) {
    const page = Math.max(1, Math.round(this.max / 10));
    const moves = { ArrowUp: -1, ArrowLeft: -1, ArrowDown: 1, ArrowRight: 1, PageUp: -page, PageDown: page };
    let value = this.value + (moves[event.key] || 0);
    if (event.key === "Home") value = 0;
    if (event.key === "End") value = this.max;
    if (value === this.value && !(event.key in moves)) return;
    event.preventDefault();
    event.stopPropagation();
    this.onInput(Math.min(this.max, Math.max(0, value)));
  }
}

/** The window presets of a series, as a row of chips; the chosen one is pressed. */
export class Presets {
  constructor(element, onChoose) {
    this.element = element;
    this.onChoose = onChoose;
  }

  show(presets, chosen) {
    const chips = presets.map((preset) => {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "vw-chip";
      chip.textContent = preset.name;
      chip.addEventListener("click", () => {
        this.mark(preset.name);
        this.onChoose(preset);
      });
      return chip;
    });
    this.element.replaceChildren(...chips);
    this.mark(chosen);
  }

  mark(name) {
    for (const chip of this.element.children) {
      chip.setAttribute("aria-pressed", String(chip.textContent === name));
    }
  }
}

export const FPS_STEPS = [1, 2, 3, 5, 8, 10, 12, 15, 20, 24, 25, 30, 40, 50, 60];

/** The cine bar: play/pause and the frame rate. ``advance()`` shows the next frame and
 * returns false while it is still loading (the clock then waits rather than skipping). */
export class Cine {
  constructor(element, advance, onToggle) {
    this.bar = element.querySelector(".vw-cine");
    this.button = this.bar.querySelector(".vw-play");
    this.rate = this.bar.querySelector(".vw-fps");
    this.advance = advance;
    this.onToggle = onToggle;
    this.fps = 15;
    this.playing = false;
    this.frame = 0;
    this.due = 0;
    this.button.addEventListener("click", () => this.toggle());
    this.bar.querySelector(".vw-slower").addEventListener("click", () => this.nudge(-1));
    this.bar.querySelector(".vw-faster").addEventListener("click", () => this.nudge(1));
  }

  /** Show the bar for a multi-frame series, paused, at its own frame rate. */
  setup(series) {
    this.pause();
    this.bar.hidden = !series.cine;
    this.fps = series.fps;
    this.show();
  }

  toggle() {
    if (this.playing) this.pause();
    else this.play();
    this.onToggle();
  }

  play() {
    if (this.playing) return;
    this.playing = true;
    this.due = performance.now() + 1000 / this.fps;
    const tick = (now) => {
      if (!this.playing) return;
      if (now >= this.due) {
        if (this.advance()) this.due = Math.max(this.due + 1000 / this.fps, now - 1000 / this.fps);
        else this.due = now; // buffering: try again next frame
      }
      this.frame = requestAnimationFrame(tick);
    };
    this.frame = requestAnimationFrame(tick);
    this.show();
  }

  pause() {
    this.playing = false;
    cancelAnimationFrame(this.frame);
    this.show();
  }

  /** Move to the next (``direction`` 1) or previous step of FPS_STEPS. */
  nudge(direction) {
    const index = FPS_STEPS.findIndex((step) => step >= this.fps);
    const here = index < 0 ? FPS_STEPS.length - 1 : index;
    const next = FPS_STEPS[Math.min(FPS_STEPS.length - 1, Math.max(0, here + direction))];
    this.fps = direction > 0 && FPS_STEPS[here] > this.fps ? FPS_STEPS[here] : next;
    this.show();
  }

  show() {
    this.button.setAttribute("aria-pressed", String(this.playing));
    this.button.setAttribute("aria-label", this.playing ? "Pause" : "Play");
    this.rate.textContent = `${this.fps} fps`;
  }
}

/** A default frame rate from Frame Time (ms), else a sensible one for the modality. */
export function defaultFps(frameTimeMs, modality) {
  if (frameTimeMs > 0) return Math.min(60, Math.max(1, Math.round(1000 / frameTimeMs)));
  return modality === "US" || modality === "XA" ? 25 : 10;
}
