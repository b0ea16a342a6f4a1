/* Overread: resumable, chunked study uploads. Plain JS, no framework.
 *
 * Each file: POST /studies/uploads {name, relative_path, size} -> {id, offset, chunk_size};
 * then PUT /studies/uploads/<id> with "Upload-Offset: N" and the chunk as body, until the
 * server has every byte and answers with the ingest results. A failed chunk is retried with
 * backoff after asking the server for its offset (GET), so a dropped connection resumes where
 * it stopped. Upload ids are kept in sessionStorage: after a reload, picking the same files
 * again resumes them. File names never go into URLs.
 */
(function () {
  "use strict";

  const form = document.getElementById("upload-form");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const startUrl = form.dataset.startUrl;
  const WORKERS = 3;
  const MAX_TRIES = 8;
  const CLUTTER = /(^|\/)(\.DS_Store|Thumbs\.db|desktop\.ini|\._[^/]*)$|(^|\/)__MACOSX\//;
  const ui = {
    inputs: ["pick-files", "pick-folder", "pick-zip"].map($),
    start: $("upload-start"),
    cancel: $("upload-cancel"),
    progress: $("upload-progress"),
    bytes: $("bytes-progress"),
    bytesText: $("bytes-text"),
    files: $("files-progress"),
    filesText: $("files-text"),
    status: $("upload-status"),
    results: $("upload-results"),
    summary: $("results-summary"),
    rows: $("results-body"),
  };
  let batch = null;

  class Cancelled extends Error {}
  class Refused extends Error {
    constructor(message, status) {
      super(message);
      this.status = status || "rejected";
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const backoff = (tries) => Math.min(30000, 500 * 2 ** tries) * (0.75 + Math.random() / 2);
  const uploadUrl = (id) => startUrl + "/" + encodeURIComponent(id);
  const transient = (status) => status === 0 || status === 423 || status === 429 || status >= 500;

  function megabytes(n) {
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
    if (n < 1024 ** 3) return (n / 1024 ** 2).toFixed(1) + " MB";
    return (n / 1024 ** 3).toFixed(2) + " GB";
  }

  /* One HTTP call; resolves {status, data} (data: parsed JSON or null), rejects on network loss. */
  function send(method, url, options) {
    const opts = options || {};
    return new Promise((resolve, reject) => {
      if (batch.cancelled) return reject(new Cancelled());
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRFToken", csrf);
      for (const [name, value] of Object.entries(opts.headers || {})) {
        xhr.setRequestHeader(name, value);
      }
      if (opts.onProgress) xhr.upload.onprogress = (event) => opts.onProgress(event.loaded);
      const done = () => batch.requests.delete(xhr);
      xhr.onload = () => {
        done();
        let data = null;
        try {
          data = JSON.parse(xhr.responseText);
        } catch (err) {
          /* not JSON: the sign-in page, after the session ended */
        }
        const signIn = xhr.responseURL && new URL(xhr.responseURL).pathname === "/login";
        if (signIn || (xhr.status < 400 && data === null)) {
          reject(new Refused("Your session has ended. Sign in again, then pick the same files to resume.", "failed"));
          return;
        }
        resolve({ status: xhr.status, data: data });
      };
      xhr.onerror = xhr.ontimeout = () => {
        done();
        reject(new Error("network"));
      };
      xhr.onabort = () => {
        done();
        reject(new Cancelled());
      };
      batch.requests.add(xhr);
      xhr.send(opts.body === undefined ? null : opts.body);
    });
  }

  function refusal(response) {
    const data = response.data || {};
    return new Refused(data.message || data.error || "The server refused this file (HTTP " + response.status + ").");
  }

  /* Send, retrying transient failures with backoff; resolves with the last response. */
  async function sendRetrying(method, url, options) {
    for (let tries = 1; ; tries++) {
      let response = null;
      try {
        response = await send(method, url, options);
      } catch (err) {
        if (!(err.message === "network")) throw err;
      }
      if (response && !transient(response.status)) return response;
      if (tries >= MAX_TRIES) throw new Refused("The connection kept failing. Pick the same files again to resume.", "failed");
      await pause(tries);
    }
  }

  async function pause(tries) {
    const ms = backoff(tries);
    say("Connection interrupted. Retrying in " + Math.ceil(ms / 1000) + " s…");
    await sleep(ms);
    if (batch.cancelled) throw new Cancelled();
  }

  function remembered(item) {
    try {
      return sessionStorage.getItem(item.key);
    } catch (err) {
      return null;
    }
  }

  function remember(item, id) {
    try {
      if (id) sessionStorage.setItem(item.key, id);
      else sessionStorage.removeItem(item.key);
    } catch (err) {
      /* storage off: resuming after a reload just starts over */
    }
  }

  /* Pick up an upload this browser session began, or declare a new one. */
  async function open(item) {
    const known = remembered(item);
    if (known) {
      const response = await sendRetrying("GET", uploadUrl(known));
      if (response.status === 200) return response.data;
      remember(item, null);
    }
    const response = await sendRetrying("POST", startUrl, {
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: item.file.name, relative_path: item.path, size: item.file.size }),
    });
    if (response.status !== 201) throw refusal(response);
    remember(item, response.data.id);
    return response.data;
  }

  async function uploadFile(item) {
    let state = await open(item);
    item.id = state.id;
    let tries = 0;
    while (!state.done) {
      showSent(item, state.offset);
      const end = Math.min(state.offset + state.chunk_size, item.file.size);
      let response = null;
      try {
        response = await send("PUT", uploadUrl(state.id), {
          headers: { "Upload-Offset": String(state.offset), "Content-Type": "application/offset+octet-stream" },
          body: item.file.slice(state.offset, end),
          onProgress: ((from) => (loaded) => showSent(item, from + loaded))(state.offset),
        });
      } catch (err) {
        if (err.message !== "network") throw err;
      }
      if (response && response.status === 200) {
        state = response.data;
        tries = 0;
        continue;
      }
      const mismatch = response && response.status === 409 && response.data && Number.isInteger(response.data.offset);
      if (response && !mismatch && !transient(response.status)) throw refusal(response);
      if (++tries > MAX_TRIES) throw new Refused("The upload kept failing. Pick the same files again to resume.", "failed");
      if (mismatch) {
        state.offset = response.data.offset;
        continue;
      }
      await pause(tries);
      const now = await sendRetrying("GET", uploadUrl(state.id));
      if (now.status !== 200) throw refusal(now);
      state = now.data;
    }
    remember(item, null);
    showSent(item, item.file.size);
    return state.results;
  }

  function showSent(item, sent) {
    item.sent = Math.min(sent, item.file.size);
    const total = batch.total;
    const sum = batch.items.reduce((acc, it) => acc + it.sent, 0);
    ui.bytes.max = Math.max(total, 1);
    ui.bytes.value = total ? sum : batch.done === batch.items.length ? 1 : 0;
    const percent = total ? Math.floor((100 * sum) / total) : ui.bytes.value * 100;
    ui.bytesText.textContent = megabytes(sum) + " of " + megabytes(total) + " (" + percent + "%)";
  }

  function showFiles() {
    ui.files.max = Math.max(batch.items.length, 1);
    ui.files.value = batch.done;
    ui.filesText.textContent = batch.done + " of " + batch.items.length + " files";
  }

  function say(text) {
    ui.status.textContent = text;
  }

  function addRows(results) {
    ui.results.hidden = false;
    for (const result of results) {
      const row = ui.rows.insertRow();
      row.className = "result-" + result.status;
      row.insertCell().textContent = result.source;
      const badge = document.createElement("span");
      badge.className = "badge badge-" + result.status;
      badge.textContent = result.status.replace("_", " ");
      row.insertCell().appendChild(badge);
      row.insertCell().textContent = result.reason || "";
      batch.counts[result.status] = (batch.counts[result.status] || 0) + 1;
    }
    ui.summary.textContent = Object.entries(batch.counts).map(([status, n]) => n + " " + status.replace("_", " ")).join(", ");
  }

  async function run(item) {
    try {
      addRows(await uploadFile(item));
    } catch (err) {
      if (err instanceof Cancelled || batch.cancelled) return;
      addRows([{ source: item.path, status: err.status || "failed", reason: err.message }]);
      batch.total -= item.file.size - item.sent; /* what will not be sent leaves the total */
    }
    batch.done += 1;
    showSent(item, item.sent);
    showFiles();
    say("Uploading: " + batch.done + " of " + batch.items.length + " files done.");
  }

  function pickedItems() {
    const items = [];
    for (const input of ui.inputs) {
      for (const file of input.files) {
        const path = file.webkitRelativePath || file.name;
        if (CLUTTER.test(path)) continue;
        const key = "overread-upload:" + [path, file.size, file.lastModified].join("|");
        items.push({ file: file, path: path, key: key, sent: 0, id: null });
      }
    }
    return items;
  }

  async function startBatch(event) {
    event.preventDefault();
    if (batch && batch.running) return;
    const items = pickedItems();
    if (!items.length) {
      ui.progress.hidden = false;
      say("Pick files, a folder or a zip first.");
      return;
    }
    batch = {
      items: items,
      total: items.reduce((acc, it) => acc + it.file.size, 0),
      done: 0,
      counts: {},
      requests: new Set(),
      running: true,
      cancelled: false,
    };
    ui.rows.textContent = "";
    ui.summary.textContent = "";
    ui.results.hidden = true;
    ui.progress.hidden = false;
    ui.start.disabled = true;
    ui.cancel.hidden = false;
    showSent(items[0], 0);
    showFiles();
    say("Uploading " + items.length + " file" + (items.length === 1 ? "" : "s") + "…");
    const queue = items.slice();
    const worker = async () => {
      let item;
      while (!batch.cancelled && (item = queue.shift())) await run(item);
    };
    await Promise.all(Array.from({ length: Math.min(WORKERS, items.length) }, worker));
    batch.running = false;
    ui.start.disabled = false;
    ui.cancel.hidden = true;
    if (!batch.cancelled) say("Done: " + (ui.summary.textContent || "nothing to show") + ".");
  }

  function cancelBatch() {
    if (!batch || !batch.running) return;
    batch.cancelled = true;
    for (const xhr of Array.from(batch.requests)) xhr.abort();
    for (const item of batch.items) {
      if (item.id && item.sent < item.file.size) {
        const xhr = new XMLHttpRequest();
        xhr.open("DELETE", uploadUrl(item.id));
        xhr.setRequestHeader("X-CSRFToken", csrf);
        xhr.send();
        remember(item, null);
      }
    }
    say("Upload cancelled. Files already done are kept.");
  }

  form.addEventListener("submit", startBatch);
  ui.cancel.addEventListener("click", cancelBatch);
  window.addEventListener("beforeunload", (event) => {
    if (batch && batch.running) event.preventDefault();
  });
})();
