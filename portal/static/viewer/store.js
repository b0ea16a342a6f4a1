/* Overread viewer: fetches rendered frames, keeps them, and decodes the ones near the eye.
 *
 * Frames arrive as small WebP/JPEG blobs from /viewer/<number>/frames/...; every blob is
 * kept (compressed, a budget in bytes, least recently used dropped first) and only the
 * frames around the current one are decoded into ImageBitmaps (a budget of decoded bytes), so a
 * 500-slice stack neither stalls nor fills a phone's memory. The caller says what it wants
 * and in which order with schedule(); at most MAX_IN_FLIGHT requests run at once, the first
 * few with fetch priority "high", the rest "low".
 */

const MAX_IN_FLIGHT = 4;
const HIGH_PRIORITY = 3;
const BLOB_BUDGET = 120 * 1024 * 1024;
const DECODED_BUDGET = 96 * 1024 * 1024; // decoded RGBA bytes: about 90 CT slices of 512x512
const RETRIES = 2;

export class FrameStore {
  /** @param {{onReady: (url: string) => void, onFailed: (url: string) => void,
   *            onDenied: (status: number) => void}} events */
  constructor(events) {
    this.events = events;
    this.blobs = new Map(); // url -> Blob (insertion order = recency)
    this.blobBytes = 0;
    this.bitmaps = new Map(); // url -> ImageBitmap (insertion order = recency)
    this.decodedBytes = 0;
    this.decoding = new Map(); // url -> Promise<ImageBitmap|null>
    this.failed = new Map(); // url -> attempts
    this.inFlight = new Set();
    this.queue = [];
    this.decodeAhead = new Set();
    this.denied = false;
  }

  /** The decoded frame for ``url``, or null (then call want/schedule and wait for onReady). */
  bitmap(url) {
    const bitmap = this.bitmaps.get(url);
    if (!bitmap) return null;
    this.bitmaps.delete(url);
    this.bitmaps.set(url, bitmap);
    return bitmap;
  }

  has(url) {
    return this.bitmaps.has(url) || this.blobs.has(url);
  }

  /** Fetch ``urls`` in this order; the first ``decodeCount`` are decoded as soon as they land. */
  schedule(urls, decodeCount) {
    this.decodeAhead = new Set(urls.slice(0, decodeCount));
    this.queue = urls.filter((url) => !this.blobs.has(url) && !this.inFlight.has(url));
    for (const url of this.decodeAhead) {
      if (this.blobs.has(url) && !this.bitmaps.has(url)) this.decode(url);
    }
    this.pump();
  }

  pump() {
    while (!this.denied && this.inFlight.size < MAX_IN_FLIGHT && this.queue.length) {
      const url = this.queue.shift();
      if ((this.failed.get(url) || 0) > RETRIES) continue;
      this.fetch(url, this.decodeAhead.has(url) && this.inFlight.size < HIGH_PRIORITY);
    }
  }

  async fetch(url, urgent) {
    this.inFlight.add(url);
    try {
      const response = await fetch(url, { priority: urgent ? "high" : "low", credentials: "same-origin" });
      if (response.status === 401 || response.status === 403 || response.status === 410) {
        this.denied = true;
        this.events.onDenied(response.status);
        return;
      }
      const type = response.headers.get("Content-Type") || "";
      if (!type.startsWith("image/")) throw new Error(`HTTP ${response.status}`);
      this.keepBlob(url, await response.blob());
      if (this.decodeAhead.has(url)) this.decode(url);
    } catch {
      this.failed.set(url, (this.failed.get(url) || 0) + 1);
      if (this.failed.get(url) <= RETRIES) this.queue.push(url);
      else this.events.onFailed(url);
    } finally {
      this.inFlight.delete(url);
      this.pump();
    }
  }

  keepBlob(url, blob) {
    this.blobs.set(url, blob);
    this.blobBytes += blob.size;
    for (const [old, oldBlob] of this.blobs) {
      if (this.blobBytes <= BLOB_BUDGET) break;
      this.blobs.delete(old);
      this.blobBytes -= oldBlob.size;
    }
  }

  /** Decode ``url`` (fetched already, or fetched first); resolves to its bitmap or null. */
  decode(url) {
    if (this.bitmaps.has(url)) return Promise.resolve(this.bitmap(url));
    if (this.decoding.has(url)) return this.decoding.get(url);
    const blob = this.blobs.get(url);
    if (!blob) {
      if (!this.inFlight.has(url) && !this.queue.includes(url)) this.queue.unshift(url);
      this.decodeAhead.add(url);
      this.pump();
      return Promise.resolve(null);
    }
    const job = createImageBitmap(blob)
      .then((bitmap) => {
        this.keepBitmap(url, bitmap);
        this.events.onReady(url);
        return bitmap;
      })
      .catch(() => null)
      .finally(() => this.decoding.delete(url));
    this.decoding.set(url, job);
    return job;
  }

  /** Keep a decoded frame; drop the least recently used ones over the budget, those that
   * are not wanted near the current image first, and never the one just decoded. */
  keepBitmap(url, bitmap) {
    this.bitmaps.set(url, bitmap);
    this.decodedBytes += bitmap.width * bitmap.height * 4;
    for (const spareWanted of [true, false]) {
      for (const [old, oldBitmap] of this.bitmaps) {
        if (this.decodedBytes <= DECODED_BUDGET) return;
        if (old === url || (spareWanted && this.decodeAhead.has(old))) continue;
        this.bitmaps.delete(old);
        this.decodedBytes -= oldBitmap.width * oldBitmap.height * 4;
        oldBitmap.close();
      }
    }
  }
}
