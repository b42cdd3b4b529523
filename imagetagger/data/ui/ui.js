// The /ui page: sends a URL or a file to the service's public API and shows its answer.
// Everything the API answers is inserted as text (textContent), never as HTML. URLs are
// relative to the page, so the page works under any route prefix.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  // What each of the API's error types means to a person; the API's detail follows.
  const MESSAGES = {
    ForbiddenURL: "The service may not fetch from that address: it is on a loopback, " +
      "private or reserved network.",
    UnreachableURL: "The image could not be downloaded: the URL cannot be reached.",
    InvalidImage: "That is not an image the service can read.",
    ImageTooLarge: "The image is larger than this service accepts.",
    Overloaded: "The service is busy right now; try again in a moment.",
    RateLimited: "Too many requests.",
    Unauthorized: "The API key was not accepted.",
    ValidationError: "The request was not valid.",
    InternalError: "Something went wrong in the service.",
    RequestTimeout: "The request took too long to reach the service.",
  };
  const KEY_NEEDED = "This service needs an API key. Enter it below; it is sent as " +
    "Authorization: Bearer with each request from this page and kept nowhere else.";

  let retry = null; // the last request, sent again with a key
  let objectUrl = null; // the picked file's preview, released when the next one shows

  function tagParameters() {
    const query = new URLSearchParams();
    const top = $("top").value.trim();
    const minconf = $("minconf").value.trim();
    if (top !== "") query.set("top", top);
    if (minconf !== "") query.set("minconf", minconf);
    if ($("general").checked) query.set("labels", "general");
    return query;
  }

  function authHeaders() {
    const key = $("key").value.trim();
    return !$("key-form").hidden && key !== "" ? { Authorization: "Bearer " + key } : {};
  }

  function tagUrl(url) {
    const query = tagParameters();
    query.set("url", url);
    const preview = /^https?:\/\//i.test(url) ? url : null;
    return send(() => fetch("predictions?" + query, { headers: authHeaders() }), preview, url);
  }

  function tagFile(file) {
    if (objectUrl !== null) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(file);
    const query = tagParameters().toString();
    const request = () => {
      const body = new FormData();
      body.append("file", file, file.name || "image");
      const target = "predictions" + (query ? "?" + query : "");
      return fetch(target, { method: "POST", body, headers: authHeaders() });
    };
    return send(request, objectUrl, file.name || "pasted image");
  }

  async function send(request, preview, caption) {
    retry = () => send(request, preview, caption);
    setBusy(true);
    showError(null);
    $("status").textContent = "Tagging…";
    try {
      let response;
      try {
        response = await request();
      } catch (error) {
        $("result").hidden = true;
        showError("Could not reach the service.", [String(error.message || error)]);
        return;
      }
      let body = null;
      try {
        body = await response.json();
      } catch (_) {
        body = null;
      }
      if (response.ok && body !== null && Array.isArray(body.predictions)) {
        // General labels ("cat", "dog") when the switch asked for them, else the fine ones.
        const labels = Array.isArray(body.general) ? body.general : body.predictions;
        showResult(labels, preview, caption);
      } else {
        $("result").hidden = true;
        showApiError(response, body);
      }
    } finally {
      $("status").textContent = "";
      setBusy(false);
    }
  }

  function showApiError(response, body) {
    const error = body !== null && typeof body === "object" ? body.error : null;
    const type = error && typeof error.type === "string" ? error.type : null;
    let title = MESSAGES[type] || `The service answered HTTP ${response.status}` +
      (type ? ` (${type}).` : ".");
    let details = [];
    if (error && Array.isArray(error.detail)) {
      details = error.detail.map(describeIssue);
    } else if (error && typeof error.detail === "string") {
      details = [error.detail];
    }
    if (type === "RateLimited") {
      const seconds = response.headers.get("Retry-After");
      if (seconds) title += ` Retry in ${seconds} s.`;
    }
    if (response.status === 401) {
      const form = $("key-form");
      const keySent = !form.hidden && $("key").value.trim() !== "";
      form.hidden = false;
      $("key-prompt").textContent = KEY_NEEDED;
      if (!keySent) {
        $("key").focus();
        showError(null);
        return;
      }
    }
    showError(title, details);
  }

  function describeIssue(issue) {
    if (issue === null || typeof issue !== "object") return String(issue);
    const where = Array.isArray(issue.loc)
      ? issue.loc.filter((part) => part !== "query" && part !== "body").join(".")
      : "";
    const message = typeof issue.message === "string" ? issue.message : "invalid";
    return where ? `${where}: ${message}` : message;
  }

  function showError(title, details = []) {
    const box = $("error");
    box.hidden = title === null;
    $("error-title").textContent = title || "";
    const list = $("error-detail");
    list.replaceChildren(...details.map((text) => item(text)));
  }

  function item(text) {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }

  function showResult(predictions, preview, caption) {
    const image = $("preview");
    image.hidden = preview === null;
    if (preview !== null) image.src = preview;
    $("source").textContent = caption;
    const list = $("labels");
    if (predictions.length === 0) {
      list.replaceChildren(item("No label reaches the minimum confidence."));
    } else {
      list.replaceChildren(...predictions.map(labelRow));
    }
    $("result").hidden = false;
  }

  function labelRow(prediction) {
    const confidence = Math.min(Math.max(Number(prediction.confidence) || 0, 0), 1);
    const row = document.createElement("li");
    row.className = "label";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = String(prediction.label);
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = (confidence * 100).toFixed(2) + "%"; // CSSOM: allowed by the CSP
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = (confidence * 100).toFixed(1) + "%";
    row.append(name, bar, value);
    return row;
  }

  function setBusy(busy) {
    for (const id of ["url-submit", "key-submit", "file"]) $(id).disabled = busy;
    document.body.classList.toggle("busy", busy);
  }

  function firstImage(files) {
    return Array.from(files || []).find((file) => file.type.startsWith("image/")) ||
      (files && files[0]) || null;
  }

  $("url-form").addEventListener("submit", (event) => {
    event.preventDefault();
    tagUrl($("url").value.trim());
  });

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (retry !== null) retry();
  });

  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) tagFile(file);
    $("file").value = ""; // picking the same file again tags it again
  });

  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = firstImage(event.dataTransfer.files);
    const link = event.dataTransfer.getData("text/uri-list").split(/\r?\n/)
      .find((line) => line !== "" && !line.startsWith("#"));
    if (file) {
      tagFile(file);
    } else if (link) {
      $("url").value = link;
      tagUrl(link);
    }
  });

  document.addEventListener("paste", (event) => {
    if (event.target instanceof HTMLInputElement) return; // typing a URL or a key
    const file = firstImage(event.clipboardData && event.clipboardData.files);
    if (file) tagFile(file);
  });
})();
