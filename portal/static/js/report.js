/* Overread: autosave of a report, addendum or overread draft. Plain JS, no framework.
 *
 * The form works without this file ("Save draft" posts it). With it, the draft fields are sent
 * as JSON to the form's data-autosave-url about 2 s after typing stops, when a field loses
 * focus, and when the page is hidden (phone locked, app switched). A failed save is retried
 * with backoff; the status line says "Draft saved HH:MM" or "Not saved — retrying".
 * Passwords and codes are never sent from here: only the form's own POST signs.
 */
(function () {
  "use strict";

  const form = document.getElementById("report-form");
  if (!form || !form.dataset.autosaveUrl) return;
  const url = form.dataset.autosaveUrl;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const status = document.getElementById("draft-status");
  const FIELDS = ["findings", "impression", "recommendations", "agreement", "comments"];
  const DEBOUNCE_MS = 2000;
  const MAX_RETRY_MS = 30000;

  let lastSaved = snapshot();
  let timer = null;
  let tries = 0;
  let saving = false;
  let stopped = false;

  function draft() {
    const data = {};
    for (const name of FIELDS) {
      const element = form.elements.namedItem(name);
      if (element) data[name] = element.value || "";
    }
    return data;
  }

  function snapshot() {
    return JSON.stringify(draft());
  }

  function say(text) {
    status.textContent = text;
  }

  function hhmm(iso) {
    const when = iso ? new Date(iso) : new Date();
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  }

  function schedule(ms) {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(save, ms);
  }

  function stop(message) {
    stopped = true;
    clearTimeout(timer);
    say(message);
  }

  async function save(options) {
    clearTimeout(timer);
    const body = snapshot();
    if (stopped || body === lastSaved) return;
    if (saving) return schedule(DEBOUNCE_MS);
    saving = true;
    try {
      const response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        keepalive: Boolean(options && options.keepalive),
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRFToken": csrf,
        },
        body: body,
      });
      await settle(response, body);
    } catch (err) {
      retry();
    } finally {
      saving = false;
    }
  }

  async function settle(response, body) {
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      /* not JSON: the sign-in page, after the session ended */
    }
    if (response.ok && data) {
      tries = 0;
      lastSaved = body;
      say("Draft saved " + hhmm(data.saved_at));
      if (snapshot() !== lastSaved) schedule(DEBOUNCE_MS);
    } else if (response.ok || response.status === 401) {
      stop("Not saved — your session has ended. Copy your text, sign in again and paste it.");
    } else if (response.status === 400 || response.status === 403 || response.status === 409) {
      stop("Not saved — " + ((data && data.message) || "the server refused this draft."));
    } else {
      retry();
    }
  }

  function retry() {
    tries += 1;
    say("Not saved — retrying");
    schedule(Math.min(MAX_RETRY_MS, 1000 * 2 ** tries));
  }

  form.addEventListener("input", (event) => {
    if (FIELDS.includes(event.target.name)) schedule(DEBOUNCE_MS);
  });
  form.addEventListener("change", (event) => {
    if (event.target.name === "agreement") save();
  });
  form.addEventListener("focusout", (event) => {
    if (FIELDS.includes(event.target.name)) save();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") save({ keepalive: true });
  });
  form.addEventListener("submit", () => {
    /* the form's own POST saves (and maybe signs) what is on the page */
    stopped = true;
    clearTimeout(timer);
  });
})();
