// model-catalog web page: plain DOM, no framework, no build step.
// All data is written with textContent, never parsed as HTML, so nothing a provider sends can run as markup.
//
// The model table reads GET /api/v1/models page by page with the filters applied by the service, and renders
// only the rows in view (fixed row height), so 50,000 models cost one page of JSON and a few dozen DOM rows.
// A change event is applied as a diff: removed ids are dropped, and only the loaded key ranges that hold an
// added or updated model are read again, for that one provider.
(() => {
  "use strict";

  const F = window.CatalogFormat;
  const TOKEN_KEY = "model-catalog.token";
  const PING_EVERY_MS = 4.5 * 60 * 1000; // API Gateway drops idle WebSockets after 10 min
  const PONG_TIMEOUT_MS = 15 * 1000;
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 30 * 1000;
  const HIGHLIGHT_MS = 8000;
  const LOG_LIMIT = 100; // entries in the live log
  const LOG_IDS = 50; // ids (or updated-model lines) shown per list in one entry
  const MAX_409_RETRIES = 3;
  const PAGE_SIZE = 500; // rows per read of GET /models
  const MAX_PAGE = 5000; // the service's largest `limit`
  const RESIDENT_ROWS = 10000; // rows kept in memory; pages farther from the view are dropped and read again
  const OVERSCAN = 10; // rows rendered above and below the visible ones
  const PREFETCH_ROWS = 200; // read the next page when the view comes this close to the end of what is loaded
  const FIRST_PAGES = 8; // first answers kept per query (with their ETags), so a filter that comes back costs a 304
  const CATCH_UP_MAX = 25; // missed events applied one by one after a reconnect; more → reload the list
  const SEARCH_DEBOUNCE_MS = 250;
  const CAN_REFRESH = new Set(["refresh", "admin"]);

  const $ = (id) => document.getElementById(id);
  const base = new URL(".", location.href); // the page's directory: "/" locally, "/<stage>/" on API Gateway
  const grouped = new Intl.NumberFormat("en");

  const state = {
    session: 0, // bumped at every sign-in and sign-out: work of an older session is dropped
    token: null,
    scope: null,
    identity: null,
    apiPrefix: "api/v1",
    wsUrl: null,
    providers: [],
    providersEtag: null,
    status: null,
    revision: null,
    seq: null, // last change event applied
    epoch: null,
    catchingUp: false, // between a (re)subscribe and the end of its catch-up, pushed events wait in `pending`
    pending: [],
    work: Promise.resolve(), // catalog updates run one after another, in order
    highlights: new Map(), // "provider\u0000id" or "provider:<id>" → {kind, until}
    ws: null,
    attempt: 0,
    reconnectTimer: null,
    pingTimer: null,
    pongTimer: null,
    busy: false,
    webhooksAvailable: true, // false once GET /webhooks answers 403/404: no panel
    webhooksLoaded: false,
    sideLoadTimer: null,
    webhookTimer: null,
  };

  // The model list of the current query: consecutive pages, each a key range of the service's order.
  // A page holds the rows after `after` (the cursor it was read with; null = from the start) up to and
  // including `endKey` (the key of its last row when read; null = to the end). Ranges never move, so a
  // change is located by key and a dropped page is read again from its cursor.
  const table = {
    query: null,
    key: null,
    version: 0, // bumped whenever `pages` is replaced: reads of an older list are dropped when they land
    reloads: 0,
    pages: [],
    nextCursor: null,
    complete: false,
    loading: false,
    loadingMore: false,
    moreError: null,
    nextLimit: PAGE_SIZE,
    changes: 0, // bumped by every applied change: a read that overlapped one is read again
    window: "",
  };
  const firstPages = new Map(); // query key → {etag, body}, least recently used first

  // ---------- DOM helpers ----------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "title") node.title = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
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

  const exactTokens = (n) => (Number.isInteger(n) ? grouped.format(n) + " tokens" : null);

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

  function headerInt(response, name) {
    const value = parseInt(response.headers.get(name) || "", 10);
    return Number.isFinite(value) ? value : null;
  }

  // One API call. With `etag`, sends If-None-Match; a 304 comes back as {status: 304, body: null}.
  async function request(method, path, etag) {
    const token = state.token;
    const headers = { Authorization: "Bearer " + token, Accept: "application/json" };
    if (etag) headers["If-None-Match"] = etag;
    let response;
    try {
      response = await fetch(apiUrl(path), { method, headers, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, "unreachable", "The service could not be reached.");
    }
    if (response.status === 401) {
      if (state.token === token) signOut("The token was not accepted. Enter it again.");
      throw new AuthError("unauthorized");
    }
    const meta = { status: response.status, etag: response.headers.get("ETag"), revision: headerInt(response, "X-Catalog-Revision") };
    if (response.status === 304) return { ...meta, body: null };
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const error = (body && body.error) || {};
      let message = error.message || "Request failed (HTTP " + response.status + ").";
      if (response.status === 403) message = "Not allowed with this token: " + message;
      throw new ApiError(response.status, error.code || "http_" + response.status, message, headerInt(response, "Retry-After"));
    }
    return { ...meta, body };
  }

  async function api(method, path) {
    return (await request(method, path)).body;
  }

  function noteRevision(revision) {
    if (Number.isInteger(revision) && (state.revision === null || revision > state.revision)) {
      state.revision = revision;
      $("stat-revision").textContent = String(revision);
    }
  }

  // Catalog updates (events, catch-up, reloads after a resync) run one at a time, in arrival order.
  function enqueue(task) {
    const session = state.session;
    const run = state.work.then(() => (session === state.session ? task() : null)).catch((err) => {
      if (!(err instanceof AuthError) && session === state.session) note("Could not update the catalog: " + err.message, "error");
    });
    state.work = run;
    return run;
  }

  // ---------- providers, status, identity ----------

  async function loadProviders() {
    const res = await request("GET", "/providers", state.providersEtag);
    if (res.status !== 304) {
      state.providers = (res.body && res.body.providers) || [];
      state.providersEtag = res.etag;
    }
    noteRevision(res.revision);
    renderStats();
    renderProviders();
    renderProviderFilter();
    renderCount();
  }

  async function loadStatus() {
    state.status = await api("GET", "/refresh/status").catch((err) => {
      if (err instanceof AuthError) throw err;
      return null;
    });
    renderStats();
  }

  async function loadIdentity() {
    try {
      state.identity = await api("GET", "/whoami");
      state.scope = state.identity.scope;
    } catch (err) {
      if (err instanceof AuthError) throw err;
      // A service from before scoped tokens has no /whoami, and its one token may refresh.
      state.identity = null;
      state.scope = err instanceof ApiError && err.status === 404 ? "refresh" : "read";
      if (!(err instanceof ApiError && err.status === 404)) note("Could not learn this token's scope: " + err.message, "warn");
    }
  }

  const canRefresh = () => CAN_REFRESH.has(state.scope);

  function applyScope() {
    const refresh = canRefresh();
    $("refresh-actions").hidden = !refresh;
    $("read-only-note").hidden = refresh;
    $("providers-table").classList.toggle("read-only", !refresh);
    const who = $("whoami");
    const name = state.identity && state.identity.name;
    who.textContent = (name ? name + " · " : "") + (state.scope || "");
    who.title = "Signed in with a token of scope '" + state.scope + "'";
    who.hidden = !state.scope;
    $("webhooks-card").hidden = !(state.scope === "admin" && state.webhooksAvailable && state.webhooksLoaded);
  }

  // After a change: provider counts (ETag: a 304 when nothing moved), the schedule and, for admins, webhooks.
  function scheduleSideLoads() {
    clearTimeout(state.sideLoadTimer);
    const session = state.session;
    state.sideLoadTimer = setTimeout(() => {
      if (session !== state.session) return;
      loadProviders().catch(reportLoadError("providers"));
      loadStatus().catch(() => {});
    }, 100);
    // Webhook deliveries follow an event within a couple of seconds.
    clearTimeout(state.webhookTimer);
    state.webhookTimer = setTimeout(() => {
      if (session === state.session) loadWebhooks();
    }, 2500);
  }

  function reportLoadError(what) {
    return (err) => {
      if (!(err instanceof AuthError)) note("Could not load the " + what + ": " + err.message, "error");
    };
  }

  // ---------- the model query ----------

  const CAPABILITY_INPUTS = () => Array.from(document.querySelectorAll("#capability-filter input[type=checkbox]"));

  // "128K", "1.5M" or plain digits → a whole number of tokens; anything else goes to the service as typed,
  // so its 400 message says what is wrong.
  function parseContext(text) {
    const raw = text.trim().replace(/[,_\s]/g, "");
    if (!raw) return null;
    const match = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(raw);
    if (!match) return text.trim();
    const unit = { "": 1, k: 1000, m: 1000000 }[match[2].toLowerCase()];
    return String(Math.round(Number(match[1]) * unit));
  }

  function currentQuery() {
    return {
      q: $("search").value.trim(),
      provider: $("provider-filter").value,
      status: $("status-filter").value,
      minContext: parseContext($("min-context").value),
      capabilities: CAPABILITY_INPUTS().filter((box) => box.checked).map((box) => box.value).sort(),
    };
  }

  const queryKey = (query) => JSON.stringify(query);

  function narrowed(query) {
    return Boolean(query && (query.q || query.status || query.minContext !== null || query.capabilities.length));
  }

  function modelsPath(query, { providerId, cursor, limit }) {
    const parts = [];
    const add = (name, value) => parts.push(name + "=" + encodeURIComponent(value));
    const provider = providerId || query.provider;
    if (provider) add("provider_id", provider);
    for (const capability of query.capabilities) add("capability", capability);
    if (query.minContext !== null) add("min_context", query.minContext);
    if (query.q) add("q", query.q);
    if (query.status) add("status", query.status);
    add("limit", limit);
    if (cursor) add("cursor", cursor);
    return "/models?" + parts.join("&");
  }

  // ---------- the model list: pages, ranges, reads ----------

  const keyOf = (m) => [m.provider_id, m.id];
  const rowKey = (providerId, id) => providerId + "\u0000" + id;

  function compareKeys(a, b) {
    return F.compareText(a[0], b[0]) || F.compareText(a[1], b[1]);
  }

  function makePage(after, afterKey, res) {
    const rows = (res.body && res.body.models) || [];
    const next = (res.body && res.body.next_cursor) || null;
    return {
      after,
      afterKey,
      endKey: next && rows.length ? keyOf(rows[rows.length - 1]) : null,
      rows,
      count: rows.length,
      reading: null,
      next,
    };
  }

  function contains(page, key) {
    return (page.afterKey === null || compareKeys(key, page.afterKey) > 0)
      && (page.endKey === null || compareKeys(key, page.endKey) <= 0);
  }

  const loadedCount = () => table.pages.reduce((sum, page) => sum + page.count, 0);
  const residentCount = () => table.pages.reduce((sum, page) => sum + (page.rows ? page.rows.length : 0), 0);

  function pageStart(index) {
    let start = 0;
    for (let i = 0; i < index; i++) start += table.pages[i].count;
    return start;
  }

  // Every row of a page's key range (or of one provider's part of it), following cursors as far as needed.
  async function readRange(query, after, endKey, expected, providerId) {
    const rows = [];
    let cursor = after;
    for (;;) {
      const limit = Math.max(50, Math.min(MAX_PAGE, expected - rows.length + 25));
      const res = await request("GET", modelsPath(query, { providerId, cursor, limit }));
      noteRevision(res.body.revision);
      for (const model of res.body.models || []) {
        const past = endKey ? compareKeys(keyOf(model), endKey) : -1;
        if (past > 0) return rows;
        rows.push(model);
        if (past === 0) return rows; // the range's last key: nothing after it belongs here
      }
      cursor = res.body.next_cursor;
      if (!cursor) return rows;
    }
  }

  // Reads a page's range again, whole or for one provider, and puts the answer in its place.
  async function rereadPage(page, providerId, extra) {
    const version = table.version;
    const query = table.query;
    const mine = providerId && page.rows ? page.rows.filter((m) => m.provider_id === providerId).length : page.count;
    const rows = await readRange(query, page.after, page.endKey, mine + (extra || 0), providerId);
    if (version !== table.version || !table.pages.includes(page)) return;
    if (providerId && !page.rows) return; // dropped meanwhile: it is read whole when it comes back into view
    withAnchor(() => {
      if (providerId) {
        const before = page.rows.filter((m) => F.compareText(m.provider_id, providerId) < 0);
        const after = page.rows.filter((m) => F.compareText(m.provider_id, providerId) > 0);
        page.rows = before.concat(rows, after);
      } else {
        page.rows = rows;
      }
      page.count = page.rows.length;
    });
  }

  // Keeps the rows in view where they are when pages above them grow or shrink.
  function withAnchor(mutate) {
    const scroller = $("models-scroll");
    const top = scroller.scrollTop;
    const rowH = rowHeight();
    let anchor = null;
    if (top >= rowH) {
      const first = Math.floor(top / rowH);
      let start = 0;
      for (const page of table.pages) {
        if (first < start + page.count) {
          anchor = { page, start };
          break;
        }
        start += page.count;
      }
    }
    mutate();
    if (anchor && table.pages.includes(anchor.page)) {
      const moved = pageStart(table.pages.indexOf(anchor.page)) - anchor.start;
      if (moved) scroller.scrollTop = top + moved * rowH;
    }
  }

  function rememberFirstPage(key, res) {
    firstPages.delete(key);
    if (!res.etag) return;
    firstPages.set(key, { etag: res.etag, body: res.body });
    while (firstPages.size > FIRST_PAGES) firstPages.delete(firstPages.keys().next().value);
  }

  // The first page of `query` (default: the current one), revalidated with the ETag of its last answer: a 304
  // means nothing in the catalog changed since, so the same query keeps every loaded page, and a query that comes
  // back takes its kept answer.
  async function reloadTable(query) {
    const wanted = query || table.query;
    if (!wanted) return;
    const key = queryKey(wanted);
    const same = key === table.key && table.pages.length > 0;
    const cached = firstPages.get(key);
    const reload = ++table.reloads;
    const changes = table.changes;
    table.loading = true;
    renderCount();
    let res;
    try {
      res = await request("GET", modelsPath(wanted, { limit: PAGE_SIZE }), cached ? cached.etag : null);
    } catch (err) {
      if (reload !== table.reloads) return;
      table.loading = false;
      if (err instanceof AuthError) return;
      showListError(wanted, err);
      return;
    }
    if (reload !== table.reloads) return;
    table.loading = false;
    noteRevision(res.revision);
    $("filter-error").hidden = true;
    if (res.status === 304 && cached) {
      if (same) {
        renderRows(true);
        return;
      }
      res = { ...res, etag: cached.etag, body: cached.body };
    }
    rememberFirstPage(key, res);
    noteRevision(res.body.revision);
    const first = makePage(null, null, res);
    replacePages(wanted, [first], first.next);
    if (!same) $("models-scroll").scrollTop = 0;
    if (table.changes !== changes) await rereadPage(first); // a change landed while this page was read
    renderRows(true);
  }

  function replacePages(query, pages, nextCursor) {
    table.version += 1;
    table.query = query;
    table.key = queryKey(query);
    table.pages = pages;
    table.nextCursor = nextCursor;
    table.complete = !nextCursor;
    table.loadingMore = false;
    table.moreError = null;
    table.nextLimit = PAGE_SIZE;
  }

  function showListError(query, err) {
    replacePages(query, [], null);
    const box = $("filter-error");
    box.textContent = err.code === "invalid_parameter"
      ? "The service refused this filter: " + err.message
      : "Could not load the models: " + err.message;
    box.hidden = false;
    renderRows(true);
  }

  // The next page, while the reader scrolls. At the very end of what is loaded, pages grow (up to the service's
  // limit), so holding End through 50,000 models takes a dozen reads rather than a hundred.
  async function loadMore(atEnd) {
    if (table.loadingMore || table.complete || !table.nextCursor || table.loading || table.moreError) return;
    const version = table.version;
    const cursor = table.nextCursor;
    const last = table.pages[table.pages.length - 1];
    const limit = atEnd ? table.nextLimit : PAGE_SIZE;
    table.nextLimit = atEnd ? Math.min(MAX_PAGE, table.nextLimit * 2) : PAGE_SIZE;
    const changes = table.changes;
    table.loadingMore = true;
    renderRows(true);
    let res;
    try {
      res = await request("GET", modelsPath(table.query, { cursor, limit }));
    } catch (err) {
      if (version !== table.version) return;
      table.loadingMore = false;
      if (!(err instanceof AuthError)) table.moreError = err.message;
      renderRows(true);
      return;
    }
    if (version !== table.version) return;
    table.loadingMore = false;
    noteRevision(res.body.revision);
    const page = makePage(cursor, last ? last.endKey : null, res);
    table.pages.push(page);
    table.nextCursor = page.next;
    table.complete = !page.next;
    if (table.changes !== changes) await rereadPage(page);
    evict();
    renderRows(true);
  }

  // A page dropped from memory comes back into view: read its range again.
  function ensurePage(page) {
    if (page.reading || (page.retryAt && Date.now() < page.retryAt)) return;
    page.reading = rereadPage(page)
      .then(() => { page.retryAt = null; })
      .catch((err) => {
        if (err instanceof AuthError) return;
        note("Could not read models: " + err.message, "error");
        page.retryAt = Date.now() + 5000; // try again when next rendered after this
        setTimeout(() => renderRows(true), 5100);
      })
      .finally(() => {
        page.reading = null;
        evict();
        renderRows(true);
      });
  }

  // Holds at most RESIDENT_ROWS rows: the pages farthest from the view are dropped (their counts stay).
  function evict() {
    let resident = residentCount();
    if (resident <= RESIDENT_ROWS) return;
    const [first, last] = visibleRange();
    const keep = new Set();
    let start = 0;
    table.pages.forEach((page, index) => {
      if (start + page.count >= first - PAGE_SIZE && start <= last + PAGE_SIZE) keep.add(index);
      start += page.count;
    });
    const center = (first + last) / 2;
    const candidates = table.pages
      .map((page, index) => ({ page, index, distance: Math.abs(pageStart(index) + page.count / 2 - center) }))
      .filter((c) => c.page.rows && !keep.has(c.index))
      .sort((a, b) => b.distance - a.distance);
    for (const { page } of candidates) {
      if (resident <= RESIDENT_ROWS) break;
      resident -= page.rows.length;
      page.rows = null;
    }
  }

  // ---------- applying a change event ----------

  function isTruncated(result) {
    if (!result || result.truncated) return true;
    return (result.changed || []).some((entry) => !Array.isArray(entry.added) || !Array.isArray(entry.removed)
      || !Array.isArray(entry.updated) || "added_count" in entry);
  }

  // Removed ids are dropped in place; each loaded range holding an added or updated id is read again for that
  // provider only (with the current filters), so the cost follows the change, not the catalog.
  async function applyResult(result) {
    if (isTruncated(result)) {
      await reloadTable();
      return;
    }
    table.changes += 1;
    const query = table.query;
    if (!query) return;
    const reads = [];
    for (const entry of result.changed || []) {
      const providerId = entry.provider_id;
      if (query.provider && query.provider !== providerId) continue;
      const removed = new Set(entry.removed);
      if (removed.size) {
        withAnchor(() => {
          for (const page of table.pages) {
            if (!page.rows) continue;
            page.rows = page.rows.filter((m) => !(m.provider_id === providerId && removed.has(m.id)));
            page.count = page.rows.length;
          }
        });
      }
      const touched = [...entry.added, ...entry.updated].map((id) => [providerId, id]);
      for (const page of table.pages) {
        const inRange = touched.filter((key) => contains(page, key)).length;
        if (inRange && page.rows) reads.push(rereadPage(page, providerId, inRange));
      }
    }
    renderRows(true);
    await Promise.all(reads);
    renderRows(true);
  }

  function markChanges(payload) {
    const until = Date.now() + HIGHLIGHT_MS;
    for (const change of (payload && payload.changed) || []) {
      state.highlights.set("provider:" + change.provider_id, { kind: "updated", until });
      for (const id of change.added || []) state.highlights.set(rowKey(change.provider_id, id), { kind: "added", until });
      for (const id of change.updated || []) state.highlights.set(rowKey(change.provider_id, id), { kind: "updated", until });
    }
    setTimeout(() => {
      const now = Date.now();
      for (const [key, h] of state.highlights) if (h.until < now) state.highlights.delete(key);
      renderProviders();
      renderRows(true);
    }, HIGHLIGHT_MS + 50);
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

  // ---------- rendering ----------

  let cachedRowHeight = null;
  function rowHeight() {
    if (!cachedRowHeight) {
      cachedRowHeight = parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--row-h")) || 48;
    }
    return cachedRowHeight;
  }

  function visibleRange() {
    const scroller = $("models-scroll");
    const rowH = rowHeight();
    const first = Math.floor(scroller.scrollTop / rowH);
    const last = Math.ceil((scroller.scrollTop + (scroller.clientHeight || 600)) / rowH);
    return [first, last];
  }

  function renderStats() {
    $("stat-providers").textContent = grouped.format(state.providers.length);
    const total = state.providers.reduce((sum, p) => sum + (p.model_count || 0), 0);
    $("stat-models").textContent = grouped.format(total);
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

  function renderProviders() {
    const body = $("providers-body");
    const rows = document.createDocumentFragment();
    const refresh = canRefresh();
    for (const p of state.providers) {
      const flash = highlightOf("provider:" + p.id);
      let button = null;
      if (refresh) {
        button = el("button", {
          class: "btn btn-small",
          type: "button",
          "data-provider": p.id,
          title: p.refreshable ? "Refresh " + p.name : "This provider cannot be refreshed",
          disabled: !p.refreshable || state.busy ? "" : null,
        }, "Refresh");
        button.addEventListener("click", () => runRefresh("provider", p.id));
      }
      rows.append(el("tr", { class: flash ? "flash-" + flash : null, "data-provider-id": p.id },
        el("td", null, el("div", { class: "name", text: p.name }), el("div", { class: "sub mono", text: p.id })),
        el("td", null, el("span", { class: "badge", text: p.kind })),
        el("td", { class: "num", text: grouped.format(p.model_count) }),
        el("td", { title: p.last_refreshed_at || "", text: ago(p.last_refreshed_at) }),
        el("td", { class: "status-cell" }, p.last_error
          ? el("span", { class: "status status-error", title: p.last_error, text: p.last_error })
          : p.last_refreshed_at
            ? el("span", { class: "status status-ok", text: "OK" })
            : el("span", { class: "status status-none", text: "Not refreshed yet" })),
        el("td", { class: "right refresh-col" }, button),
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
    const current = select.value;
    const options = [el("option", { value: "" }, "All providers")];
    for (const p of state.providers) options.push(el("option", { value: p.id }, p.name));
    select.replaceChildren(...options);
    select.value = wanted.includes(current) ? current : "";
    if (current && !wanted.includes(current)) applyFilters(); // the provider left the catalog
  }

  function renderCount() {
    const count = $("models-count");
    const query = table.query;
    if (!query || (table.loading && !table.pages.length)) {
      count.textContent = "loading…";
      return;
    }
    const loaded = loadedCount();
    const providers = query.provider ? state.providers.filter((p) => p.id === query.provider) : state.providers;
    const total = providers.reduce((sum, p) => sum + (p.model_count || 0), 0);
    let text;
    if (narrowed(query)) {
      text = table.complete ? grouped.format(loaded) + " match" : grouped.format(loaded) + "+ match";
    } else {
      text = table.complete ? grouped.format(loaded) : grouped.format(loaded) + " of " + grouped.format(total) + " loaded";
    }
    count.textContent = text;
    $("clear-filters").hidden = !(narrowed(query) || query.provider);
  }

  function modelRow(m, names) {
    const flash = highlightOf(rowKey(m.provider_id, m.id));
    const idLine = el("div", { class: "line" }, el("span", { class: "model-id mono", title: m.id, text: m.id }));
    if (flash) idLine.append(el("span", { class: "pill pill-" + flash, text: flash === "added" ? "new" : "updated" }));
    // Second line: lifecycle first (it must never be cut off), then the display name.
    const meta = el("div", { class: "sub meta" });
    if (m.status === "deprecated") {
      meta.append(el("span", { class: "lifecycle deprecated", title: "The provider has deprecated this model", text: "deprecated" }));
    }
    if (m.retires_at) {
      meta.append(el("span", { class: "lifecycle retires", title: "The provider stops serving it on " + m.retires_at, text: "retires " + m.retires_at }));
    }
    if (m.display_name && m.display_name !== m.id) meta.append(el("span", { class: "name-text", title: m.display_name, text: m.display_name }));
    const name = meta.childNodes.length ? meta : null;

    const tags = el("div", { class: "line tags" });
    for (const c of m.capabilities || []) tags.append(el("span", { class: "tag", text: c }));
    const modalities = m.modalities
      ? "in " + ((m.modalities.input || []).join(", ") || "—") + " · out " + ((m.modalities.output || []).join(", ") || "—")
      : null;

    const p = m.pricing;
    const priceLine = p ? F.dollars(p.input_per_mtok) + " / " + F.dollars(p.output_per_mtok) : F.NONE;
    const hasCache = p && (p.cache_read_per_mtok !== null && p.cache_read_per_mtok !== undefined
      || p.cache_write_per_mtok !== null && p.cache_write_per_mtok !== undefined);
    const cache = hasCache ? "cache " + F.dollars(p.cache_read_per_mtok) + " / " + F.dollars(p.cache_write_per_mtok) : null;

    return el("tr", { class: "model-row" + (flash ? " flash-" + flash : ""), "data-deprecated": m.status === "deprecated" ? "true" : null },
      el("td", { class: "provider-cell mono", title: names.get(m.provider_id) || m.provider_id, text: m.provider_id }),
      el("td", { class: "model-cell" }, idLine, name),
      el("td", { class: "num", title: exactTokens(m.context_length), text: F.tokens(m.context_length) }),
      el("td", { class: "num", title: exactTokens(m.max_output_tokens), text: F.tokens(m.max_output_tokens) }),
      el("td", { class: "caps" }, tags, modalities ? el("div", { class: "sub", title: "Modalities: " + modalities, text: modalities }) : null),
      el("td", { class: "num price", title: p ? "USD per million tokens" : null },
        el("div", { class: "line", text: priceLine }), cache ? el("div", { class: "sub", text: cache }) : null),
    );
  }

  function spacer(height) {
    const cell = el("td", { colspan: "6" });
    cell.style.height = height + "px";
    return el("tr", { class: "spacer", "aria-hidden": "true" }, cell);
  }

  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      renderRows(false);
    });
  }

  // Renders the rows in view plus OVERSCAN above and below; the rest of the height is two spacers.
  function renderRows(force) {
    const rowH = rowHeight();
    const total = loadedCount();
    const [top, bottom] = visibleRange();
    const first = Math.max(0, Math.min(top - OVERSCAN, total - 1));
    const last = Math.min(total - 1, bottom + OVERSCAN);
    const footer = table.pages.length && !table.complete
      ? (table.moreError ? "Could not load more: " + table.moreError : table.loadingMore ? "Loading more…" : "Scroll for more")
      : "";
    const signature = [table.version, first, last, footer].join("|");
    if (!force && signature === table.window) return;
    table.window = signature;

    const names = new Map(state.providers.map((p) => [p.id, p.name]));
    const rows = document.createDocumentFragment();
    if (total > 0) {
      if (first > 0) rows.append(spacer(first * rowH));
      let start = 0;
      for (const page of table.pages) {
        const end = start + page.count;
        if (end > first && start <= last) {
          if (!page.rows) ensurePage(page);
          for (let i = Math.max(first, start); i <= Math.min(last, end - 1); i++) {
            const model = page.rows ? page.rows[i - start] : null;
            rows.append(model ? modelRow(model, names)
              : el("tr", { class: "model-row placeholder" }, el("td", { colspan: "6", class: "muted", text: "Loading…" })));
          }
        }
        start = end;
      }
      if (last < total - 1) rows.append(spacer((total - 1 - last) * rowH));
    }
    if (footer) {
      const cell = el("td", { colspan: "6", class: "more" + (table.moreError ? " error" : "") }, footer);
      if (table.moreError) {
        const retry = el("button", { class: "btn btn-small", type: "button" }, "Retry");
        retry.addEventListener("click", () => {
          table.moreError = null;
          loadMore(false);
        });
        cell.append(" ", retry);
      }
      rows.append(el("tr", { class: "more-row" }, cell));
    }
    $("models-body").replaceChildren(rows);
    const tableEl = $("models-table");
    tableEl.dataset.loaded = String(total);
    tableEl.dataset.resident = String(residentCount());
    tableEl.dataset.complete = String(table.complete);
    $("models-empty").hidden = !(table.complete && total === 0 && !table.loading && $("filter-error").hidden);
    renderCount();
    if (!table.complete && table.pages.length && bottom + PREFETCH_ROWS >= total) loadMore(bottom >= total);
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

  const more = (n) => el("span", { class: "muted more-ids", text: "… and " + grouped.format(n) + " more" });

  function idList(label, cls, ids) {
    if (!ids || !ids.length) return null;
    const list = el("div", { class: "diff " + cls }, el("span", { class: "diff-label", text: label }));
    for (const id of ids.slice(0, LOG_IDS)) list.append(el("code", { text: id }));
    if (ids.length > LOG_IDS) list.append(more(ids.length - LOG_IDS));
    return list;
  }

  // Updated models as the CLI prints them: "~ <id>: <phrase>; <phrase>" (docs/reference.md §10.5).
  function updateLines(entry) {
    if (!entry.updated || !entry.updated.length) return null;
    const updates = F.describeUpdates(entry);
    const box = el("div", { class: "diff diff-updated" }, el("span", { class: "diff-label", text: "updated" }));
    const lines = el("div", { class: "change-lines" });
    for (const update of updates.slice(0, LOG_IDS)) lines.append(el("div", { class: "change-line mono", text: F.updateLine(update) }));
    if (updates.length > LOG_IDS) lines.append(more(updates.length - LOG_IDS));
    box.append(lines);
    return box;
  }

  function countsOnly(entry) {
    const parts = [];
    for (const kind of ["added", "removed", "updated"]) {
      if (entry[kind + "_count"]) parts.push(grouped.format(entry[kind + "_count"]) + " " + kind);
    }
    return parts.length ? el("div", { class: "muted", text: parts.join(", ") }) : null;
  }

  function describeResult(result, heading) {
    const item = el("div", { class: "diff-body" });
    if (heading) item.append(heading);
    for (const change of result.changed || []) {
      item.append(el("div", { class: "diff-provider" },
        el("strong", { text: change.provider_name || change.provider_id }),
        idList("added", "diff-added", change.added),
        idList("removed", "diff-removed", change.removed),
        updateLines(change),
        countsOnly(change)));
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
    if (msg.truncated || payload.truncated) body.append(el("div", { class: "muted", text: "Details truncated; the list was reloaded." }));
    pushLog(el("li", { class: "log-event", "data-seq": String(msg.seq) }, head, body));
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
          noteRevision(result.revision);
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
      scheduleSideLoads();
      // Live, the change event brings the diff; without the socket, read the list again.
      if (!(state.ws && state.ws.readyState === WebSocket.OPEN)) enqueue(() => reloadTable());
    } catch (err) {
      if (!(err instanceof AuthError)) showResult("error", "Refresh failed: " + err.message);
    } finally {
      setBusy(false);
    }
  }

  // ---------- webhooks (admin) ----------

  async function loadWebhooks() {
    if (state.scope !== "admin" || !state.webhooksAvailable || !state.token) return;
    let body;
    try {
      body = await api("GET", "/webhooks");
    } catch (err) {
      if (err instanceof AuthError) return;
      if (err instanceof ApiError && [403, 404, 405].includes(err.status)) {
        // A service without webhooks (or a token that may not see them): no panel at all.
        state.webhooksAvailable = false;
        $("webhooks-card").hidden = true;
        return;
      }
      const box = $("webhooks-error");
      box.textContent = "Could not load the webhooks: " + err.message;
      box.hidden = false;
      return;
    }
    state.webhooksLoaded = true;
    $("webhooks-error").hidden = true;
    renderWebhooks((body && body.webhooks) || []);
    applyScope();
  }

  function renderWebhooks(hooks) {
    const rows = document.createDocumentFragment();
    for (const hook of hooks) {
      const d = hook.deliveries || {};
      const providers = hook.provider_ids && hook.provider_ids.length ? hook.provider_ids.join(", ") : "all";
      rows.append(el("tr", { "data-webhook-id": hook.id, "data-enabled": String(Boolean(hook.enabled)) },
        el("td", { class: "endpoint" },
          el("div", { class: "mono url", title: hook.url, text: hook.url }),
          hook.description ? el("div", { class: "sub", text: hook.description }) : null),
        el("td", { class: "mono", text: providers }),
        el("td", null, el("span", { class: "state " + (hook.enabled ? "state-on" : "state-off"), text: hook.enabled ? "Enabled" : "Disabled" })),
        el("td", { class: "num", text: grouped.format(d.succeeded || 0) }),
        el("td", { class: "num" + (d.failed ? " bad" : ""), text: grouped.format(d.failed || 0) }),
        el("td", { class: "num" + (d.pending ? " warn" : ""), text: grouped.format(d.pending || 0) }),
        el("td", { class: "status-cell" }, hook.last_error
          ? el("span", { class: "status status-error", title: hook.last_error, text: hook.last_error })
          : el("span", { class: "status status-none", text: "—" })),
      ));
    }
    if (!hooks.length) rows.append(el("tr", null, el("td", { colspan: "7", class: "empty", text: "No webhook endpoints yet. Create one with the CLI: webhooks create." })));
    $("webhooks-body").replaceChildren(rows);
    $("webhooks-count").textContent = grouped.format(hooks.length);
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
      // The position comes back in `subscribed`; what was missed meanwhile is read from GET /changes.
      state.catchingUp = true;
      state.pending = [];
      send(ws, { action: "subscribe", since: null, epoch: null });
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
        const reconnected = state.attempt > 0;
        state.attempt = 0;
        setConn("connected");
        enqueue(() => onSubscribed(msg, reconnected));
        break;
      }
      case "resync_required":
        enqueue(() => resync(msg.seq, msg.epoch));
        break;
      case "event.model_catalog.changed":
        if (state.catchingUp) state.pending.push(msg);
        else enqueue(() => onChange(msg));
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

  async function onSubscribed(msg, reconnected) {
    try {
      if (state.seq === null) {
        state.seq = msg.seq;
        state.epoch = msg.epoch;
        // Anything that changed between the first read and this subscription is read now.
        if (msg.revision !== state.revision) await Promise.all([reloadTable(), loadProviders()]);
      } else if (msg.epoch !== state.epoch || msg.seq < state.seq) {
        await resync(msg.seq, msg.epoch);
      } else if (msg.seq > state.seq) {
        await catchUp();
      } else if (reconnected) {
        note("Reconnected; nothing was missed.");
      }
    } finally {
      state.catchingUp = false;
      const pending = state.pending.sort((a, b) => a.seq - b.seq);
      state.pending = [];
      for (const event of pending) await onChange(event);
    }
  }

  async function resync(seq, epoch) {
    state.seq = seq;
    state.epoch = epoch;
    note("Missed changes while disconnected; reloaded the catalog.", "warn");
    await Promise.all([reloadTable(), loadProviders()]);
  }

  // After a reconnect: the events missed meanwhile, from GET /changes (the same messages the socket sends).
  async function catchUp() {
    const events = [];
    let since = state.seq;
    let latest = null;
    for (;;) {
      const body = await api("GET", "/changes?since=" + since + "&epoch=" + encodeURIComponent(state.epoch) + "&limit=100");
      if (body.resync_required) {
        await resync(body.seq, body.epoch);
        return;
      }
      latest = body;
      events.push(...(body.events || []));
      if (!body.has_more || !body.events.length || events.length > CATCH_UP_MAX) break;
      since = body.events[body.events.length - 1].seq;
    }
    if (events.length > CATCH_UP_MAX) {
      for (const event of events.slice(-LOG_LIMIT)) logEvent(event);
      state.seq = latest.seq;
      state.epoch = latest.epoch;
      note("Reconnected; " + grouped.format(events.length) + "+ changes were missed, so the list was read again.", "warn");
      await Promise.all([reloadTable(), loadProviders()]);
      return;
    }
    note("Reconnected; caught up on " + events.length + (events.length === 1 ? " change." : " changes."));
    for (const event of events) await onChange(event);
  }

  async function onChange(msg) {
    let gap = false;
    if (state.epoch !== null && msg.epoch !== state.epoch) gap = true;
    else if (state.seq !== null && msg.seq <= state.seq) return; // already applied (a replay overlap)
    else if (state.seq !== null && msg.seq !== state.seq + 1) gap = true;
    state.seq = msg.seq;
    state.epoch = msg.epoch;
    const payload = msg.payload || {};
    noteRevision(payload.revision);
    logEvent(msg);
    markChanges(payload);
    scheduleSideLoads();
    if (gap) {
      note("Some changes were missed; reloaded the list.", "warn");
      await reloadTable();
      return;
    }
    await applyResult(msg.truncated ? { ...payload, truncated: true } : payload);
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
    $("whoami").hidden = true;
    $("signin").hidden = false;
    const error = $("signin-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("token-input").value = "";
    $("token-input").focus();
    setConn("idle");
  }

  function signOut(message) {
    state.session += 1;
    state.token = null;
    state.scope = null;
    state.identity = null;
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
    state.revision = null;
    state.attempt = 0;
    state.catchingUp = false;
    state.pending = [];
    state.providersEtag = null;
    state.webhooksAvailable = true;
    state.webhooksLoaded = false;
    replacePages(currentQuery(), [], null);
    table.key = null;
    state.highlights.clear();
    firstPages.clear();
    renderRows(true);
    $("log").replaceChildren();
    $("log-empty").hidden = false;
    $("refresh-result").hidden = true;
    showSignIn(message);
  }

  async function signIn(token) {
    state.session += 1;
    state.token = token;
    try {
      await loadClientConfig();
      await loadIdentity();
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
    applyScope();
    const session = state.session;
    await Promise.all([
      loadProviders().catch(reportLoadError("providers")),
      loadStatus().catch(() => {}),
      reloadTable(currentQuery()),
    ]);
    if (session !== state.session) return;
    loadWebhooks();
    connect();
  }

  function applyFilters() {
    if (!state.token) return;
    const query = currentQuery();
    if (queryKey(query) === table.key && $("filter-error").hidden) return;
    enqueue(() => reloadTable(query));
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
    let typing = null;
    const later = () => {
      clearTimeout(typing);
      typing = setTimeout(applyFilters, SEARCH_DEBOUNCE_MS);
    };
    $("search").addEventListener("input", later);
    $("min-context").addEventListener("input", later);
    for (const id of ["provider-filter", "status-filter"]) $(id).addEventListener("change", applyFilters);
    for (const box of CAPABILITY_INPUTS()) box.addEventListener("change", applyFilters);
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(typing);
      applyFilters();
    });
    $("clear-filters").addEventListener("click", () => {
      $("filters").reset();
      applyFilters();
    });
    $("models-scroll").addEventListener("scroll", scheduleRender, { passive: true });
    window.addEventListener("resize", scheduleRender);
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
      if (!state.token || $("app").hidden) return;
      renderStats();
      renderProviders();
      // Statuses change without events (a refresh that changed nothing); a revalidation is a 304 otherwise.
      loadProviders().catch(() => {});
      loadWebhooks();
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
