// model-catalog web page: plain DOM, no framework, no build step.
// All data is written with textContent, never parsed as HTML, so nothing a provider sends can run as markup.
(() => {
  "use strict";

  const TOKEN_KEY = "model-catalog.token";
  const PING_EVERY_MS = 4.5 * 60 * 1000; // API Gateway drops idle WebSockets after 10 min
  const PONG_TIMEOUT_MS = 15 * 1000;
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 30 * 1000;
  const HIGHLIGHT_MS = 8000;
  const LOG_LIMIT = 100;
  const MAX_409_RETRIES = 3;

  const $ = (id) => document.getElementById(id);
  const base = new URL(".", location.href); // the page's directory: "/" locally, "/<stage>/" on API Gateway

  const state = {
    token: null,
    apiPrefix: "api/v1",
    wsUrl: null,
    providers: [],
    models: [],
    revision: null,
    status: null,
    seq: null, // last change event seen
    epoch: null,
    sortKey: "provider_id",
    sortDir: 1,
    search: "",
    providerFilter: "",
    highlights: new Map(), // "provider\u0000id" or "provider:<id>" → {kind, until}
    ws: null,
    attempt: 0,
    reconnectTimer: null,
    pingTimer: null,
    pongTimer: null,
    loading: null,
    loadAgain: false,
    busy: false,
  };

  // ---------- DOM helpers ----------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else if (key === "title") node.title = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
  const grouped = new Intl.NumberFormat("en");

  function tokens(n) {
    return n === null || n === undefined ? null : compact.format(n);
  }

  function money(n) {
    if (n === null || n === undefined) return "–";
    return n === 0 || n >= 0.01 ? n.toFixed(2) : n.toPrecision(2);
  }

  function ago(iso) {
    if (!iso) return "never";
    const then = Date.parse(iso);
    if (Number.isNaN(then)) return iso;
    const s = Math.round((Date.now() - then) / 1000);
    if (s < -30) return "in " + until(iso);
    if (s < 45) return "just now";
    if (s < 90 * 60) return Math.max(1, Math.round(s / 60)) + " min ago";
    if (s < 36 * 3600) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function until(iso) {
    const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
    if (s <= 60) return "under a minute";
    if (s < 90 * 60) return Math.round(s / 60) + " min";
    if (s < 36 * 3600) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }

  function clock(iso) {
    const d = iso ? new Date(iso) : new Date();
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString();
  }

  // ---------- API ----------

  class AuthError extends Error {}
  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  function apiUrl(path) {
    return new URL(state.apiPrefix.replace(/^\/+|\/+$/g, "") + path, base);
  }

  async function api(method, path) {
    let response;
    try {
      response = await fetch(apiUrl(path), {
        method,
        headers: { Authorization: "Bearer " + state.token, Accept: "application/json" },
        cache: "no-store",
      });
    } catch (err) {
      throw new ApiError(0, "unreachable", "The service could not be reached.");
    }
    if (response.status === 401) {
      signOut("The token was not accepted. Enter it again.");
      throw new AuthError("unauthorized");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const error = (body && body.error) || {};
      const retryAfter = parseInt(response.headers.get("Retry-After") || "", 10);
      throw new ApiError(
        response.status,
        error.code || "http_" + response.status,
        error.message || "Request failed (HTTP " + response.status + ").",
        Number.isFinite(retryAfter) ? retryAfter : null,
      );
    }
    return body;
  }

  async function fetchAllModels() {
    let models = [];
    let revision = null;
    let cursor = null;
    for (let page = 0; page < 1000; page++) {
      const body = await api("GET", "/models" + (cursor ? "?cursor=" + encodeURIComponent(cursor) : ""));
      models = models.concat(body.models || []);
      if (revision === null) revision = body.revision;
      cursor = body.next_cursor || null;
      if (!cursor) break;
    }
    return { models, revision };
  }

  // One reload at a time; requests that arrive meanwhile collapse into one more pass.
  function reload() {
    if (state.loading) {
      state.loadAgain = true;
      return state.loading;
    }
    state.loading = (async () => {
      do {
        state.loadAgain = false;
        const [providers, catalog, status] = await Promise.all([
          api("GET", "/providers"),
          fetchAllModels(),
          api("GET", "/refresh/status").catch(() => null),
        ]);
        state.providers = providers.providers || [];
        state.models = catalog.models;
        state.revision = catalog.revision;
        state.status = status;
        render();
      } while (state.loadAgain);
    })()
      .catch((err) => {
        if (!(err instanceof AuthError)) note("Could not load the catalog: " + err.message, "error");
      })
      .finally(() => {
        state.loading = null;
      });
    return state.loading;
  }

  // ---------- rendering ----------

  function render() {
    renderStats();
    renderProviders();
    renderProviderFilter();
    renderModels();
  }

  function renderStats() {
    $("stat-providers").textContent = grouped.format(state.providers.length);
    $("stat-models").textContent = grouped.format(state.models.length);
    $("stat-revision").textContent = state.revision === null ? "–" : String(state.revision);
    const s = state.status;
    let text = "–";
    if (s) {
      if (!s.refresh_interval_ms) text = "off";
      else {
        const every = s.refresh_interval_ms;
        const label = every % 3600000 === 0 ? every / 3600000 + " h" : Math.round(every / 60000) + " min";
        text = "every " + label + (s.next_due_at ? " · next " + ago(s.next_due_at) : "");
      }
    }
    $("stat-schedule").textContent = text;
  }

  function highlightOf(key) {
    const h = state.highlights.get(key);
    if (!h) return null;
    if (h.until < Date.now()) {
      state.highlights.delete(key);
      return null;
    }
    return h.kind;
  }

  function renderProviders() {
    const body = $("providers-body");
    const rows = document.createDocumentFragment();
    for (const p of state.providers) {
      const flash = highlightOf("provider:" + p.id);
      const button = el("button", {
        class: "btn btn-small",
        type: "button",
        "data-provider": p.id,
        title: p.refreshable ? "Refresh " + p.name : "This provider cannot be refreshed",
        disabled: !p.refreshable || state.busy ? "" : null,
      }, "Refresh");
      button.addEventListener("click", () => runRefresh("provider", p.id));
      rows.append(el("tr", { class: flash ? "flash-" + flash : null, "data-provider-id": p.id },
        el("td", null, el("div", { class: "name", text: p.name }), el("div", { class: "sub mono", text: p.id })),
        el("td", null, el("span", { class: "badge", text: p.kind })),
        el("td", { class: "num", text: grouped.format(p.model_count) }),
        el("td", { title: p.last_refreshed_at || "" , text: ago(p.last_refreshed_at) }),
        el("td", { class: "status-cell" }, p.last_error
          ? el("span", { class: "status status-error", title: p.last_error, text: p.last_error })
          : p.last_refreshed_at
            ? el("span", { class: "status status-ok", text: "OK" })
            : el("span", { class: "status status-none", text: "Not refreshed yet" })),
        el("td", { class: "right" }, button),
      ));
    }
    body.replaceChildren(rows);
    if (!state.providers.length) {
      body.append(el("tr", null, el("td", { colspan: "6", class: "empty", text: "No providers configured." })));
    }
  }

  function renderProviderFilter() {
    const select = $("provider-filter");
    const wanted = ["", ...state.providers.map((p) => p.id)];
    const have = Array.from(select.options, (o) => o.value);
    if (wanted.join("\u0000") === have.join("\u0000")) return;
    const options = [el("option", { value: "" }, "All providers")];
    for (const p of state.providers) options.push(el("option", { value: p.id }, p.name));
    select.replaceChildren(...options);
    if (!wanted.includes(state.providerFilter)) state.providerFilter = "";
    select.value = state.providerFilter;
  }

  function sortValue(m, key) {
    switch (key) {
      case "price": return m.pricing ? m.pricing.input_per_mtok : null;
      case "capabilities": return (m.capabilities || []).length || null;
      default: return m[key];
    }
  }

  function compareModels(a, b) {
    const dir = state.sortDir;
    const va = sortValue(a, state.sortKey);
    const vb = sortValue(b, state.sortKey);
    if (va !== vb) {
      if (va === null || va === undefined) return 1; // blanks last, whichever the direction
      if (vb === null || vb === undefined) return -1;
      if (typeof va === "number" && typeof vb === "number") return (va - vb) * dir;
      const c = String(va).localeCompare(String(vb), "en", { numeric: true });
      if (c) return c * dir;
    }
    return a.provider_id.localeCompare(b.provider_id) || a.id.localeCompare(b.id, "en", { numeric: true });
  }

  function matches(m, needle) {
    if (!needle) return true;
    const hay = [m.provider_id, m.id, m.display_name || "", ...(m.capabilities || [])].join(" ").toLowerCase();
    return needle.split(/\s+/).every((word) => hay.includes(word));
  }

  function renderModels() {
    const needle = state.search.trim().toLowerCase();
    const shown = state.models
      .filter((m) => (!state.providerFilter || m.provider_id === state.providerFilter) && matches(m, needle))
      .sort(compareModels);
    const names = new Map(state.providers.map((p) => [p.id, p.name]));
    const rows = document.createDocumentFragment();
    for (const m of shown) {
      const flash = highlightOf(m.provider_id + "\u0000" + m.id);
      const caps = el("td", { class: "caps" });
      for (const c of m.capabilities || []) caps.append(el("span", { class: "tag", text: c }));
      const price = m.pricing
        ? money(m.pricing.input_per_mtok) + " / " + money(m.pricing.output_per_mtok)
        : "–";
      rows.append(el("tr", { class: flash ? "flash-" + flash : null },
        el("td", { class: "provider-cell mono", title: names.get(m.provider_id) || m.provider_id, text: m.provider_id }),
        el("td", null,
          el("span", { class: "model-id mono", text: m.id }),
          flash ? el("span", { class: "pill pill-" + flash, text: flash === "added" ? "new" : "updated" }) : null,
          m.display_name && m.display_name !== m.id ? el("span", { class: "sub", text: m.display_name }) : null),
        el("td", { class: "num", title: m.context_length ? grouped.format(m.context_length) + " tokens" : null,
          text: tokens(m.context_length) || "–" }),
        el("td", { class: "num", title: m.max_output_tokens ? grouped.format(m.max_output_tokens) + " tokens" : null,
          text: tokens(m.max_output_tokens) || "–" }),
        caps,
        el("td", { class: "num", text: price }),
      ));
    }
    $("models-body").replaceChildren(rows);
    $("models-empty").hidden = shown.length > 0;
    $("models-count").textContent = shown.length === state.models.length
      ? grouped.format(state.models.length)
      : grouped.format(shown.length) + " of " + grouped.format(state.models.length);
    for (const th of document.querySelectorAll("#models-table th")) {
      const key = th.querySelector("button").dataset.sort;
      th.setAttribute("aria-sort", key === state.sortKey ? (state.sortDir > 0 ? "ascending" : "descending") : "none");
    }
  }

  function markChanges(payload) {
    const until = Date.now() + HIGHLIGHT_MS;
    for (const change of (payload && payload.changed) || []) {
      state.highlights.set("provider:" + change.provider_id, { kind: "updated", until });
      for (const id of change.added || []) state.highlights.set(change.provider_id + "\u0000" + id, { kind: "added", until });
      for (const id of change.updated || []) state.highlights.set(change.provider_id + "\u0000" + id, { kind: "updated", until });
    }
    setTimeout(() => { renderProviders(); renderModels(); }, HIGHLIGHT_MS + 50);
  }

  // ---------- live log ----------

  function pushLog(item) {
    const log = $("log");
    log.prepend(item);
    while (log.children.length > LOG_LIMIT) log.lastElementChild.remove();
    $("log-empty").hidden = true;
  }

  function note(text, kind) {
    pushLog(el("li", { class: "log-note" + (kind ? " log-" + kind : "") },
      el("time", { text: clock() }), el("span", { text: text })));
  }

  function idList(label, cls, ids) {
    if (!ids || !ids.length) return null;
    const list = el("div", { class: "diff " + cls }, el("span", { class: "diff-label", text: label }));
    for (const id of ids) list.append(el("code", { text: id }));
    return list;
  }

  function describeResult(result, heading) {
    const item = el("div", { class: "diff-body" });
    if (heading) item.append(heading);
    for (const change of result.changed || []) {
      item.append(el("div", { class: "diff-provider" },
        el("strong", { text: change.provider_name || change.provider_id }),
        idList("added", "diff-added", change.added),
        idList("removed", "diff-removed", change.removed),
        idList("updated", "diff-updated", change.updated)));
    }
    for (const failure of result.failed || []) {
      item.append(el("div", { class: "diff-provider diff-failed" },
        el("strong", { text: failure.provider_id }), el("span", { text: " failed: " + failure.reason })));
    }
    return item;
  }

  function logEvent(msg) {
    const payload = msg.payload || {};
    const head = el("div", { class: "log-head" },
      el("time", { title: msg.timestamp || "", text: clock(msg.timestamp) }),
      el("span", { class: "log-title", text: "Catalog changed" }),
      el("span", { class: "muted", text: "#" + msg.seq + (payload.revision !== undefined ? " · rev " + payload.revision : "") }));
    const body = describeResult(payload);
    if (msg.truncated || payload.truncated) body.append(el("div", { class: "muted", text: "Details truncated; the tables were reloaded." }));
    pushLog(el("li", { class: "log-event" }, head, body));
  }

  // ---------- refresh buttons ----------

  function summary(result) {
    const n = (list) => (list || []).length;
    const parts = [n(result.changed) + " changed", n(result.unchanged) + " unchanged"];
    if (n(result.failed)) parts.push(n(result.failed) + " failed");
    return "Revision " + result.revision + " · " + parts.join(" · ");
  }

  function showResult(kind, text, result) {
    const box = $("refresh-result");
    box.className = "result result-" + kind;
    const close = el("button", { class: "btn btn-ghost btn-small close", type: "button", "aria-label": "Dismiss" }, "×");
    close.addEventListener("click", () => { box.hidden = true; });
    box.replaceChildren(el("div", { class: "result-head" }, el("strong", { text })), close);
    if (result) box.append(describeResult(result, el("div", { class: "muted", text: summary(result) })));
    box.hidden = false;
  }

  function setBusy(busy) {
    state.busy = busy;
    for (const b of document.querySelectorAll("#refresh-all, #refresh-oauth, #providers-body button")) {
      const provider = b.dataset.provider && state.providers.find((p) => p.id === b.dataset.provider);
      b.disabled = busy || (provider ? !provider.refreshable : false);
    }
  }

  async function runRefresh(scope, providerId) {
    const path = scope === "all" ? "/providers:refresh"
      : scope === "oauth" ? "/providers:refresh_oauth"
      : "/providers/" + encodeURIComponent(providerId) + ":refresh";
    const label = scope === "all" ? "all providers" : scope === "oauth" ? "OAuth-managed providers" : providerId;
    setBusy(true);
    showResult("running", "Refreshing " + label + "…");
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          const result = await api("POST", path);
          const failed = (result.failed || []).length;
          showResult(failed ? "warn" : "ok", "Refreshed " + label + (failed ? " with failures" : ""), result);
          break;
        } catch (err) {
          if (err instanceof ApiError && err.code === "refresh_in_progress" && attempt < MAX_409_RETRIES) {
            const wait = Math.max(1, err.retryAfter || 2);
            showResult("running", "Another refresh is running; retrying in " + wait + " s…");
            await new Promise((resolve) => setTimeout(resolve, wait * 1000));
            continue;
          }
          throw err;
        }
      }
      await reload();
    } catch (err) {
      if (!(err instanceof AuthError)) showResult("error", "Refresh failed: " + err.message);
    } finally {
      setBusy(false);
    }
  }

  // ---------- WebSocket ----------

  function setConn(kind, detail) {
    const conn = $("conn");
    const banner = $("banner");
    const labels = { connecting: "Connecting…", connected: "Live", reconnecting: "Reconnecting…", offline: "Offline", idle: "Not connected" };
    conn.dataset.state = kind;
    $("conn-text").textContent = labels[kind] || kind;
    banner.dataset.state = kind;
    if (kind === "reconnecting" || kind === "offline") {
      banner.textContent = detail || labels[kind];
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
  }

  function send(ws, message) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }

  function ping() {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || state.pongTimer) return;
    send(ws, { action: "ping" });
    // A half-open connection never closes by itself; no pong in time means start over.
    state.pongTimer = setTimeout(() => {
      state.pongTimer = null;
      if (state.ws === ws) dropConnection(ws);
    }, PONG_TIMEOUT_MS);
  }

  function stopTimers() {
    clearInterval(state.pingTimer);
    clearTimeout(state.pongTimer);
    state.pingTimer = null;
    state.pongTimer = null;
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (!state.token) return;
    if (!state.wsUrl) {
      setConn("offline", "Live updates are unavailable: the service announced no WebSocket URL.");
      return;
    }
    if (!navigator.onLine) {
      setConn("offline", "You are offline. The page reconnects when the network is back.");
      return;
    }
    let url;
    try {
      url = new URL(state.wsUrl, base);
    } catch (err) {
      setConn("offline", "The WebSocket URL from the server is not valid.");
      return;
    }
    url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;
    url.searchParams.set("token", state.token);
    setConn(state.attempt ? "reconnecting" : "connecting", state.attempt ? "Connection lost. Reconnecting…" : null);
    const ws = new WebSocket(url.toString());
    state.ws = ws;
    ws.onopen = () => {
      if (state.ws !== ws) return;
      send(ws, { action: "subscribe", since: state.seq, epoch: state.epoch });
      state.pingTimer = setInterval(ping, PING_EVERY_MS);
    };
    ws.onmessage = (event) => {
      if (state.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      onMessage(msg);
    };
    ws.onclose = () => {
      if (state.ws === ws) dropConnection(ws);
    };
  }

  function dropConnection(ws) {
    state.ws = null;
    stopTimers();
    try {
      ws.onclose = null;
      ws.close();
    } catch (err) { /* already closed */ }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (!state.token) return;
    state.attempt += 1;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (state.attempt - 1)) * (0.8 + Math.random() * 0.4);
    if (!navigator.onLine) {
      setConn("offline", "You are offline. The page reconnects when the network is back.");
      return;
    }
    setConn("reconnecting", "Connection lost. Reconnecting in " + Math.max(1, Math.round(delay / 1000)) + " s…");
    state.reconnectTimer = setTimeout(async () => {
      // A refused WebSocket gives no status; every few attempts ask the API whether the token still works.
      if (state.attempt % 3 === 0) {
        try {
          await loadClientConfig();
        } catch (err) {
          if (err instanceof AuthError) return;
        }
      }
      connect();
    }, delay);
  }

  function onMessage(msg) {
    switch (msg.type) {
      case "subscribed": {
        const firstTime = state.seq === null;
        const resumedSameEpoch = !firstTime && msg.epoch === state.epoch;
        if (firstTime) {
          state.seq = msg.seq;
          state.epoch = msg.epoch;
        }
        if (state.attempt > 0) note(resumedSameEpoch ? "Reconnected; catching up." : "Reconnected.");
        state.attempt = 0;
        setConn("connected");
        // Anything that changed between the first load and this subscription, or while away, is fetched now.
        if (msg.revision !== state.revision && (firstTime || msg.seq === state.seq)) reload();
        break;
      }
      case "resync_required":
        state.seq = msg.seq;
        state.epoch = msg.epoch;
        note("Missed changes while disconnected; reloaded the catalog.", "warn");
        reload();
        break;
      case "event.model_catalog.changed":
        onChange(msg);
        break;
      case "pong":
        clearTimeout(state.pongTimer);
        state.pongTimer = null;
        break;
      case "error":
        note("Server: " + ((msg.error && msg.error.message) || "error"), "error");
        break;
      default:
        break;
    }
  }

  function onChange(msg) {
    let gap = false;
    if (state.epoch !== null && msg.epoch !== state.epoch) gap = true;
    else if (state.seq !== null && msg.seq <= state.seq) return; // already seen (a replay overlap)
    else if (state.seq !== null && msg.seq !== state.seq + 1) gap = true;
    state.seq = msg.seq;
    state.epoch = msg.epoch;
    logEvent(msg);
    if (gap) note("Some changes were missed; reloaded everything.", "warn");
    markChanges(msg.payload);
    reload();
  }

  // ---------- token / startup ----------

  function readHashToken() {
    // Parsed by hand: URLSearchParams would turn a "+" in the token into a space.
    const hash = location.hash.replace(/^#/, "");
    const parts = hash ? hash.split("&") : [];
    const found = parts.find((part) => part.startsWith("token="));
    if (!found) return null;
    const rest = parts.filter((part) => part !== found).join("&");
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    let token = found.slice("token=".length);
    try {
      token = decodeURIComponent(token);
    } catch (err) { /* keep it as typed */ }
    return token.trim() || null;
  }

  async function loadClientConfig() {
    const config = await api("GET", "/client-config");
    state.wsUrl = config.ws_url;
    if (config.api_prefix) state.apiPrefix = config.api_prefix;
  }

  function showSignIn(message) {
    $("app").hidden = true;
    $("sign-out").hidden = true;
    $("signin").hidden = false;
    const error = $("signin-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("token-input").value = "";
    $("token-input").focus();
    setConn("idle");
  }

  function signOut(message) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    const ws = state.ws;
    state.ws = null;
    stopTimers();
    clearTimeout(state.reconnectTimer);
    if (ws) {
      ws.onclose = null;
      ws.close();
    }
    state.seq = null;
    state.epoch = null;
    state.attempt = 0;
    showSignIn(message);
  }

  async function signIn(token) {
    state.token = token;
    try {
      await loadClientConfig();
    } catch (err) {
      if (err instanceof AuthError) return;
      showSignIn("The service could not be reached: " + err.message);
      state.token = token; // keep it: a retry should not need it typed again
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("signin").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    await reload();
    connect();
  }

  function wireControls() {
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token-input").value.trim();
      if (token) signIn(token);
    });
    $("sign-out").addEventListener("click", () => signOut());
    $("refresh-all").addEventListener("click", () => runRefresh("all"));
    $("refresh-oauth").addEventListener("click", () => runRefresh("oauth"));
    $("clear-log").addEventListener("click", () => {
      $("log").replaceChildren();
      $("log-empty").hidden = false;
    });
    let searchTimer = null;
    $("search").addEventListener("input", (event) => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => {
        state.search = event.target.value;
        renderModels();
      }, 80);
    });
    $("provider-filter").addEventListener("change", (event) => {
      state.providerFilter = event.target.value;
      renderModels();
    });
    for (const button of document.querySelectorAll("#models-table th button")) {
      button.addEventListener("click", () => {
        const key = button.dataset.sort;
        state.sortDir = state.sortKey === key ? -state.sortDir : 1;
        state.sortKey = key;
        renderModels();
      });
    }
    window.addEventListener("online", () => {
      if (state.token && !state.ws) {
        state.attempt = Math.max(state.attempt, 1);
        connect();
      }
    });
    window.addEventListener("offline", () => {
      if (state.token) setConn("offline", "You are offline. The page reconnects when the network is back.");
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") ping(); // after a laptop sleep, find out at once
    });
    setInterval(() => {
      if (state.token && !$("app").hidden) {
        renderStats();
        renderProviders();
      }
    }, 30 * 1000);
  }

  function start() {
    wireControls();
    const fromHash = readHashToken();
    const token = fromHash || sessionStorage.getItem(TOKEN_KEY);
    if (token) signIn(token);
    else showSignIn();
  }

  start();
})();
