/* Overread viewer: pointer gestures on the image area, for touch, pen and mouse alike.
 *
 * One finger (or the left mouse button) does what the current tool says: "scroll" (vertical
 * drag moves through the stack), "wl" (horizontal = width, vertical = centre), "pan", or
 * "measure" (drag a line, or tap its two ends). Two fingers always pinch-zoom and pan. A tap
 * toggles the overlay (after a short wait, so a double tap can still fit the image instead).
 * Mouse: right button = window/level, middle = pan, wheel = stack, ctrl+wheel = zoom.
 * readerHandlers() and readerKey() say what each gesture and key does to the Reader.
 */

const TAP_SLOP = { touch: 10, pen: 6, mouse: 3 };
const TAP_MS = 450;
const DOUBLE_TAP_MS = 300;
const DOUBLE_TAP_PX = 30;
const WHEEL_STEP = 40;

export function attachGestures(element, handlers) {
  const pointers = new Map();
  let gesture = null;
  let lastTap = null;
  let tapTimer = 0;
  let wheelSum = 0;

  const at = (event) => {
    const box = element.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top };
  };

  function toolFor(event) {
    if (event.pointerType === "mouse" && event.button === 2) return "wl";
    if (event.pointerType === "mouse" && event.button === 1) return "pan";
    return handlers.tool();
  }

  function down(event) {
    if (event.pointerType === "mouse" && event.button > 2) return;
    event.preventDefault();
    element.setPointerCapture(event.pointerId);
    pointers.set(event.pointerId, at(event));
    if (pointers.size === 1) {
      const point = at(event);
      gesture = { kind: "one", tool: toolFor(event), start: point, last: point, time: performance.now(),
        moved: false, slop: TAP_SLOP[event.pointerType] || 8 };
      if (gesture.tool === "wl") handlers.wlStart();
    } else if (pointers.size === 2) {
      endOne(true);
      gesture = { kind: "pinch", ...pair() };
    }
  }

  function pair() {
    const [a, b] = [...pointers.values()];
    const mid = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
    return { distance: Math.hypot(a.x - b.x, a.y - b.y) || 1, mid };
  }

  function move(event) {
    if (!pointers.has(event.pointerId) || !gesture) return;
    const point = at(event);
    pointers.set(event.pointerId, point);
    if (gesture.kind === "pinch" && pointers.size >= 2) {
      const now = pair();
      const { mid } = now;
      handlers.pinch(now.distance / gesture.distance, mid, mid.x - gesture.mid.x, mid.y - gesture.mid.y);
      Object.assign(gesture, now);
    } else if (gesture.kind === "one") {
      moveOne(point);
    }
  }

  function moveOne(point) {
    const dx = point.x - gesture.start.x;
    const dy = point.y - gesture.start.y;
    if (!gesture.moved) {
      if (Math.hypot(dx, dy) < gesture.slop) return;
      gesture.moved = true;
      if (gesture.tool === "measure") handlers.measureStart(gesture.start);
      if (gesture.tool === "scroll") handlers.scrollStart();
    }
    if (gesture.tool === "scroll") handlers.scrollDrag(dy);
    else if (gesture.tool === "wl") handlers.wlDrag(dx, dy);
    else if (gesture.tool === "pan") handlers.pan(point.x - gesture.last.x, point.y - gesture.last.y);
    else if (gesture.tool === "measure") handlers.measureMove(point);
    gesture.last = point;
  }

  /** Finish a one-finger gesture; ``interrupted`` when a second finger came down. */
  function endOne(interrupted) {
    if (!gesture || gesture.kind !== "one") return;
    if (gesture.tool === "wl") handlers.wlEnd();
    if (gesture.moved && gesture.tool === "measure") {
      if (interrupted) handlers.measureCancel();
      else handlers.measureEnd(gesture.last);
    }
  }

  function up(event) {
    if (!pointers.has(event.pointerId)) return;
    const point = at(event);
    pointers.delete(event.pointerId);
    if (gesture && gesture.kind === "one") {
      if (gesture.tool !== "measure" || gesture.moved) gesture.last = point;
      const quick = performance.now() - gesture.time < TAP_MS;
      const wasTap = !gesture.moved && quick && event.type === "pointerup";
      endOne(false);
      if (wasTap) tap(point, gesture.tool);
      gesture = null;
    } else if (gesture && gesture.kind === "pinch") {
      gesture = pointers.size ? { kind: "rest" } : null; // lifting one finger does not scroll
    } else if (!pointers.size) {
      gesture = null;
    }
  }

  function tap(point, tool) {
    const now = performance.now();
    const double = lastTap && now - lastTap.time < DOUBLE_TAP_MS &&
      Math.hypot(point.x - lastTap.point.x, point.y - lastTap.point.y) < DOUBLE_TAP_PX;
    clearTimeout(tapTimer);
    if (double) {
      lastTap = null;
      handlers.doubleTap(point);
      return;
    }
    lastTap = { point, time: now };
    if (tool === "measure") handlers.measureTap(point);
    else tapTimer = setTimeout(() => handlers.tap(point), DOUBLE_TAP_MS);
  }

  function wheel(event) {
    event.preventDefault();
    const unit = event.deltaMode === 1 ? 40 : event.deltaMode === 2 ? 800 : 1;
    const delta = event.deltaY * unit;
    if (event.ctrlKey) {
      handlers.zoomAt(Math.exp(-delta / 300), at(event));
      return;
    }
    wheelSum = Math.abs(delta) >= WHEEL_STEP ? delta : wheelSum + delta;
    if (Math.abs(wheelSum) >= WHEEL_STEP) {
      handlers.step(Math.sign(wheelSum));
      wheelSum = 0;
    }
  }

  element.addEventListener("pointerdown", down);
  element.addEventListener("pointermove", move);
  element.addEventListener("pointerup", up);
  element.addEventListener("pointercancel", up);
  element.addEventListener("wheel", wheel, { passive: false });
  element.addEventListener("contextmenu", (event) => event.preventDefault());
  element.addEventListener("gesturestart", (event) => event.preventDefault()); // iOS page zoom
}

/** What gestures and keys do to a Reader (see reader.js). */
export function readerHandlers(reader) {
  const zoomAt = (factor, point) => {
    reader.stage.zoomAt(factor, point.x, point.y);
    clearTimeout(reader.sizeTimer);
    reader.sizeTimer = setTimeout(() => reader.series && reader.maybeUpsize(), 250);
  };
  return {
    tool: () => reader.tool,
    step: (delta) => reader.step(delta),
    scrollStart: () => {
      reader.scrollBase = reader.index;
    },
    scrollDrag: (dy) => {
      const perImage = Math.min(24, Math.max(6, reader.stage.height / reader.series.items.length));
      reader.go(reader.scrollBase + Math.trunc(-dy / perImage));
    },
    pan: (dx, dy) => reader.stage.panBy(dx, dy),
    pinch: (factor, mid, dx, dy) => {
      reader.stage.panBy(dx, dy);
      zoomAt(factor, mid);
    },
    zoomAt,
    wlStart: () => reader.wlStart(),
    wlDrag: (dx, dy) => reader.wlDrag(dx, dy),
    wlEnd: () => reader.wlEnd(),
    measureStart: (point) => reader.ruler.start(point),
    measureMove: (point) => reader.ruler.move(point),
    measureEnd: (point) => reader.ruler.end(point),
    measureCancel: () => reader.ruler.cancel(),
    measureTap: (point) => reader.ruler.tap(point),
    tap: () => reader.setOverlay(!reader.overlay),
    doubleTap: () => {
      reader.ruler.pending = null;
      reader.stage.fit();
    },
  };
}

/** Keys on a desktop: arrows and pages scroll, Home/End, Space plays, I inverts, R resets,
 * O toggles the overlay. Returns false for any other key. */
export function readerKey(reader, event) {
  const total = reader.series.items.length;
  const page = Math.max(1, Math.round(total / 10));
  const steps = { ArrowUp: -1, ArrowLeft: -1, ArrowDown: 1, ArrowRight: 1, PageUp: -page, PageDown: page };
  if (event.key in steps) reader.step(steps[event.key]);
  else if (event.key === "Home") reader.go(0, 1);
  else if (event.key === "End") reader.go(total - 1, -1);
  else if (event.key === " " && reader.series.cine) reader.cine.toggle();
  else if (event.key === "i") reader.setInvert(!reader.invert);
  else if (event.key === "r") reader.reset();
  else if (event.key === "o") reader.setOverlay(!reader.overlay);
  else return false;
  return true;
}
