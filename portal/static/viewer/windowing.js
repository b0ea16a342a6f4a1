/* Overread viewer: window/level. A window is {center, width, name}; null means the file's
 * own (the server's default), AUTO a window the server fits to each frame. The frame URL
 * carries it; a CSS filter previews a change on the pixels already shown.
 */

export const AUTO = Object.freeze({ name: "auto", auto: true });

/** The frame's URL at ``size`` pixels (longest side) with ``window``. */
export function frameUrl(item, size, window) {
  const base = item.instance.url.replace("{frame}", String(item.frame));
  const query = new URLSearchParams({ format: "webp", size: String(size) });
  if (window === AUTO) {
    query.set("window", "auto");
  } else if (window) {
    query.set("wc", String(round(window.center, 2)));
    query.set("ww", String(round(window.width, 2)));
  }
  return `${base}${base.includes("?") ? "&" : "?"}${query}`;
}

/**
 * The linear map (output = slope * input + intercept, on 0..1 grey levels) that turns pixels
 * shown with window ``shown`` into an approximation of window ``wanted``, then inverts.
 * Unknown windows (auto) give the identity: the right pixels are on their way anyway.
 */
export function previewFilter(shown, wanted, invert) {
  let slope = 1;
  let intercept = 0;
  if (shown && wanted && wanted.width > 0) {
    slope = shown.width / wanted.width;
    intercept = (shown.center - wanted.center) / wanted.width + (1 - slope) / 2;
  }
  return invert ? { slope: -slope, intercept: 1 - intercept } : { slope, intercept };
}

/** A drag of (dx, dy) CSS pixels over a stage of ``width`` x ``height``: across the whole
 * width multiplies the window width by e^2 (or divides it), down the whole height raises the
 * centre by one window width. */
export function draggedWindow(base, dx, dy, width, height) {
  return {
    center: base.center + (dy * base.width) / height,
    width: Math.max(1, base.width * Math.exp((2 * dx) / width)),
    name: "",
  };
}

/** The window kept in a saved place (see Reader.state), or null. */
export function savedWindow(saved) {
  if (saved.ww > 0) return { center: saved.wc, width: saved.ww, name: saved.wn || "" };
  return saved.wn === "auto" ? AUTO : null;
}

export function round(value, digits) {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
