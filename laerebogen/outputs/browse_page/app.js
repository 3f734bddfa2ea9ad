/* Lærebogen browse page: a run's conversations, their lineage, the rejected records and the
 * task map, from the data/*.js files that laerebogen/outputs/browse.py writes (each calls
 * LB.load(name, value); file:// forbids fetch). Plain ES2020, classic script, no libraries.
 * Every piece of data is model output: it goes into the page as text nodes, never as HTML.
 *
 * Stable hooks (tests and users' scripts rely on them):
 *   #total-conversations #total-filtered #total-removed #total-rejections   header totals
 *   #tab-conversations #tab-rejections #tab-map                             the views (links)
 *   #search #filter-version #filter-source #filter-generation #filter-operation
 *   #filter-domain #filter-quality #filter-turns #reset-filters             list controls
 *     #filter-version values: "all", "in", "out", "reason:<index into facets.reason>"
 *   #count            "1,234 of 200,000 conversations"; data-total = the number listed
 *   #search-status    a running text search: progress; data-done="1" when every file is searched
 *   #conversations tbody tr[data-index]   the page's rows (50); #page-prev #page-next #page-info
 *   #conversation     the open conversation (data-index once shown); #conversation-title,
 *                     #conversation-meta, #messages .message[data-role], #back, #conv-prev/next
 *   #show-messages #show-lineage; #lineage li.event[data-step] with .event-step, .event-model,
 *                     .event-seed, .event-note; ins/del mark a word diff
 *   #rejections       #steps tbody tr[data-step], #rejections-step, #rejections-reason (values:
 *                     "" or the reason), #rejections-search, #rejections-count (data-done="1"
 *                     when complete), #rejections-list li.reject[data-step][data-reason]
 *   #map canvas, #map-legend li, #map-note, #map-tooltip; #map data-ready="1" once drawn;
 *                     LB.mapPosition(p): where point p of data/map.js is on the canvas
 *   #error            a visible message when a data file cannot be loaded
 *   <html data-ready="1"> after the first table render with its previews
 *   window.LB.timings performance.now() milestones: start, meta, table, firstTable, firstRows;
 *                     search = {files, ms, firstMatches} of the last finished text search
 * URL hash: #conversation=<row>[&show=lineage], #view=rejections[&step=&reason=&q=], #view=map
 */
"use strict";

(function () {
  const PAGE = 50; // conversations per page
  const REJECTS_PAGE = 25; // rejected records per page
  const YIELD_MS = 16; // longest stretch of scanning cached files before the page may paint
  const PROGRESS_MS = 200; // how often a scan shows what it found so far

  // --- data files ---------------------------------------------------------------------------

  const pending = new Map(); // name -> {resolve, reject} of a data file being loaded
  const loaded = new Map(); // name -> Promise of its value (each file is loaded at most once)
  const values = new Map(); // name -> value of the files loaded so far (read without waiting)

  const LB = {
    timings: { start: performance.now() },
    load(name, value) {
      values.set(name, value);
      const waiter = pending.get(name);
      if (waiter) {
        pending.delete(name);
        waiter.resolve(value);
      }
    },
  };
  window.LB = LB;

  function dataFile(name) {
    let promise = loaded.get(name);
    if (promise) return promise;
    promise = new Promise((resolve, reject) => {
      pending.set(name, { resolve, reject });
      const script = document.createElement("script");
      script.src = "data/" + name + ".js";
      script.addEventListener("load", () => {
        script.remove();
        if (pending.delete(name)) {
          reject(new Error(`data/${name}.js did not call LB.load("${name}", …)`));
        }
      });
      script.addEventListener("error", () => {
        script.remove();
        pending.delete(name);
        reject(new Error(`data/${name}.js could not be loaded: is the browse/data folder complete?`));
      });
      document.head.appendChild(script);
    });
    promise.catch(showError);
    loaded.set(name, promise);
    return promise;
  }

  const numbered = (prefix, k) => prefix + "-" + String(k).padStart(4, "0");

  // --- small helpers ------------------------------------------------------------------------

  const $ = (selector) => document.querySelector(selector);

  /** An element with properties and children; strings become text nodes (never HTML). */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === "class") el.className = value;
        else if (key === "dataset") Object.assign(el.dataset, value);
        else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
        else el.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  const fmt = (n) => Number(n).toLocaleString("en-US");
  const plural = (n, one, many) => fmt(n) + " " + (n === 1 ? one : many || one + "s");

  function showError(error) {
    const box = $("#error");
    const message = error && error.message ? error.message : String(error);
    if (!box.textContent.includes(message)) {
      box.append(h("p", null, message));
    }
    box.hidden = false;
  }

  window.addEventListener("error", (event) => showError(event.message || "error"));
  window.addEventListener("unhandledrejection", (event) => showError(event.reason));

  /** Let the browser paint when a loop has run for a while. */
  let lastYield = 0;
  function breathe() {
    const now = performance.now();
    if (now - lastYield < YIELD_MS) return null;
    return new Promise((resolve) => {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => {
        lastYield = performance.now();
        resolve();
      };
      channel.port2.postMessage(null);
    });
  }

  /** Case-insensitive matchers of every whitespace-separated word of a query. */
  function matchers(query) {
    const words = query.trim().split(/\s+/).filter(Boolean);
    return words.map((word) => new RegExp(word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "iu"));
  }

  function selectOptions(select, options) {
    const current = select.value;
    select.replaceChildren(...options.map(([value, label]) => h("option", { value }, label)));
    if (options.some(([value]) => value === current)) select.value = current;
  }

  function hashParams() {
    return new URLSearchParams(location.hash.replace(/^#/, ""));
  }

  function setHash(params, replace) {
    const text = params.toString();
    const url = location.pathname + location.search + (text ? "#" + text : "");
    if (replace) history.replaceState(null, "", url);
    else location.hash = text;
  }

  // --- state --------------------------------------------------------------------------------

  let meta = null;
  let table = null;
  let N = 0;
  let list = new Int32Array(0); // the rows the filters and the search let through, ascending
  let listed = null; // Uint8Array: 1 = row in list (the map greys the rest out)
  let page = 0;
  let search = null; // {query, tests, matched: Uint8Array, searched: number, files: number}
  let searchRun = 0;
  let renderRun = 0;
  let firstRows = true;

  // --- start --------------------------------------------------------------------------------

  async function start() {
    const metaPromise = dataFile("meta");
    const tablePromise = dataFile("table");
    meta = await metaPromise;
    LB.timings.meta = performance.now();
    if (meta.conversations > 0) dataFile(numbered("rows", 0)); // the first page's, while the table loads
    showTotals();
    table = await tablePromise;
    LB.timings.table = performance.now();
    N = meta.conversations;
    for (const [column, values] of Object.entries(table)) {
      if (values.length !== N) {
        throw new Error(`data/table.js: column ${column} has ${values.length} values, not ${N}`);
      }
    }
    setUpListControls();
    applyFilters();
    renderList();
    LB.timings.firstTable = performance.now();
    setUpRejections();
    setUpMap();
    window.addEventListener("hashchange", route);
    route();
  }

  function showTotals() {
    document.title = "Lærebogen: " + meta.title;
    $("#run-title").textContent = meta.title;
    $("#total-conversations").textContent = fmt(meta.conversations);
    $("#total-filtered").textContent = fmt(meta.filtered);
    $("#total-removed").textContent = fmt(meta.removed);
    $("#total-rejections").textContent = fmt(meta.rejections.total);
    document.body.classList.toggle("not-annotated", !meta.annotated);
    $("#tab-map").classList.toggle("absent", !meta.map);
  }

  // --- the conversations' list --------------------------------------------------------------

  function counted(column, skip) {
    const counts = new Map();
    for (const value of table[column]) {
      if (value === skip) continue;
      counts.set(value, (counts.get(value) || 0) + 1);
    }
    return counts;
  }

  function setUpListControls() {
    const facets = meta.facets;
    const count = (counts, value) => " (" + fmt(counts.get(value) || 0) + ")";
    const failing = new Array(facets.reason.length).fill(0);
    let out = 0;
    for (const mask of table.failed) {
      if (mask === 0) continue;
      out += 1;
      for (let r = 0; r < failing.length; r++) if (mask & (1 << r)) failing[r] += 1;
    }
    selectOptions($("#filter-version"), [
      ["all", "All"],
      ["in", "In the filtered version (" + fmt(N - out) + ")"],
      ["out", "Not in the filtered version (" + fmt(out) + ")"],
      ...facets.reason.map((reason, r) => ["reason:" + r, "Fails " + reason + " (" + fmt(failing[r]) + ")"]),
    ]);
    const sources = counted("source");
    selectOptions($("#filter-source"), [
      ["", "All"],
      ...facets.source.map((name, s) => [String(s), name + count(sources, s)]),
    ]);
    const generations = counted("generation");
    selectOptions($("#filter-generation"), [
      ["", "All"],
      ...[...generations.keys()].sort((a, b) => a - b).map((g) => [
        String(g), (g === 0 ? "0, not evolved" : String(g)) + count(generations, g),
      ]),
    ]);
    const operations = counted("operation");
    selectOptions($("#filter-operation"), [
      ["", "All"],
      ["-1", "None" + count(operations, -1)],
      ...facets.operation.map((name, o) => [String(o), name + count(operations, o)]),
    ]);
    const domains = counted("domain");
    selectOptions($("#filter-domain"), [
      ["", "All"],
      ...facets.domain.map((name, d) => [String(d), name + count(domains, d)]),
      ["-1", "Not annotated" + count(domains, -1)],
    ]);
    const qualities = counted("quality");
    selectOptions($("#filter-quality"), [
      ["", "All"],
      ...[5, 4, 3, 2, 1].map((q) => [String(q), q + count(qualities, q)]),
      ["0", "Not annotated" + count(qualities, 0)],
    ]);
    const turns = counted("turns");
    selectOptions($("#filter-turns"), [
      ["", "All"],
      ...[...turns.keys()].sort((a, b) => a - b).map((t) => [String(t), t + count(turns, t)]),
    ]);

    for (const select of document.querySelectorAll("#filters select")) {
      select.addEventListener("change", () => {
        page = 0;
        applyFilters();
        renderList();
      });
    }
    $("#filters").addEventListener("submit", (event) => event.preventDefault());
    let typing = 0;
    const input = $("#search");
    input.addEventListener("input", () => {
      delete $("#search-status").dataset.done; // a search is due
      clearTimeout(typing);
      typing = setTimeout(() => startSearch(input.value), 250);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        clearTimeout(typing);
        startSearch(input.value);
      }
    });
    $("#reset-filters").addEventListener("click", () => {
      for (const select of document.querySelectorAll("#filters select")) {
        select.selectedIndex = 0;
      }
      input.value = "";
      startSearch("");
    });
    const turnPage = (to) => () => {
      const last = Math.max(0, Math.ceil(list.length / PAGE) - 1);
      page = Math.min(last, Math.max(0, to(last)));
      renderList();
    };
    $("#page-first").addEventListener("click", turnPage(() => 0));
    $("#page-prev").addEventListener("click", turnPage(() => page - 1));
    $("#page-next").addEventListener("click", turnPage(() => page + 1));
    $("#page-last").addEventListener("click", turnPage((last) => last));
  }

  function filterValues() {
    const number = (id) => ($(id).value === "" ? null : Number($(id).value));
    const version = $("#filter-version").value;
    return {
      version,
      reasonBit: version.startsWith("reason:") ? 1 << Number(version.slice(7)) : 0,
      source: number("#filter-source"),
      generation: number("#filter-generation"),
      operation: number("#filter-operation"),
      domain: meta.annotated ? number("#filter-domain") : null,
      quality: meta.annotated ? number("#filter-quality") : null,
      turns: number("#filter-turns"),
    };
  }

  /** Fill `list` with the rows the filters and the search (as far as it got) let through. */
  function applyFilters() {
    const f = filterValues();
    const { source, generation, operation, domain, quality, turns, failed } = table;
    const matched = search ? search.matched : null;
    const out = new Int32Array(N);
    listed = new Uint8Array(N);
    let n = 0;
    for (let i = 0; i < N; i++) {
      if (matched !== null && matched[i] === 0) continue;
      if (f.source !== null && source[i] !== f.source) continue;
      if (f.generation !== null && generation[i] !== f.generation) continue;
      if (f.operation !== null && operation[i] !== f.operation) continue;
      if (f.domain !== null && domain[i] !== f.domain) continue;
      if (f.quality !== null && quality[i] !== f.quality) continue;
      if (f.turns !== null && turns[i] !== f.turns) continue;
      if (f.version === "in" && failed[i] !== 0) continue;
      if (f.version === "out" && failed[i] === 0) continue;
      if (f.reasonBit !== 0 && (failed[i] & f.reasonBit) === 0) continue;
      out[n++] = i;
      listed[i] = 1;
    }
    list = out.subarray(0, n);
    const last = Math.max(0, Math.ceil(n / PAGE) - 1);
    if (page > last) page = last;
    if (mapState.ready && $("#map-match-filters").checked) drawMap();
  }

  async function startSearch(query) {
    const run = ++searchRun;
    const tests = matchers(query);
    const status = $("#search-status");
    page = 0;
    if (tests.length === 0) {
      search = null;
      status.hidden = true;
      applyFilters();
      renderList();
      return;
    }
    const files = Math.ceil(N / meta.rows_chunk);
    search = { query: query.trim(), tests, matched: new Uint8Array(N), searched: 0, files };
    status.hidden = false;
    delete status.dataset.done;
    applyFilters();
    renderList();
    const began = performance.now();
    let shown = began;
    let firstShown = null;
    for (let k = 0; k < files; k++) {
      const name = numbered("rows", k);
      const wasLoaded = values.has(name);
      let rows;
      try {
        rows = await dataFile(name);
      } catch (error) {
        return; // shown by dataFile; the search stops at the missing file
      }
      if (run !== searchRun) return; // a newer search took over
      const { start: first, id, user } = rows;
      const matched = search.matched;
      for (let j = 0; j < id.length; j++) {
        let all = true;
        for (const test of tests) {
          if (!test.test(user[j]) && !test.test(id[j])) {
            all = false;
            break;
          }
        }
        if (all) matched[first + j] = 1;
      }
      search.searched = k + 1;
      const now = performance.now();
      if (now - shown >= PROGRESS_MS || k === files - 1 || (firstShown === null && list.length < PAGE)) {
        shown = now;
        applyFilters();
        renderList();
        if (firstShown === null && list.length > 0) firstShown = performance.now() - began;
      }
      // Loading a file lets the page paint; scanning cached ones must pause now and then.
      const pause = wasLoaded ? breathe() : null;
      if (pause !== null) {
        await pause;
        if (run !== searchRun) return;
      }
    }
    LB.timings.search = { files, ms: performance.now() - began, firstMatches: firstShown };
    status.dataset.done = "1";
    renderCount();
  }

  function renderCount() {
    const count = $("#count");
    count.dataset.total = String(list.length);
    let text = fmt(list.length) + " of " + plural(N, "conversation");
    if (search) {
      const done = search.searched === search.files;
      text += done ? " match “" + search.query + "”" : " match so far";
      const progress = $("#search-progress");
      progress.max = search.files;
      progress.value = search.searched;
      $("#search-text").textContent = done
        ? "searched all " + plural(search.files, "file")
        : "searching: " + fmt(search.searched) + " of " + plural(search.files, "file");
    }
    count.textContent = text;
    const pages = Math.max(1, Math.ceil(list.length / PAGE));
    $("#page-info").textContent = "Page " + fmt(page + 1) + " of " + fmt(pages);
    $("#page-first").disabled = $("#page-prev").disabled = page === 0;
    $("#page-next").disabled = $("#page-last").disabled = page >= pages - 1;
  }

  /** Render the current page: the table's columns now, ids and previews when their rows
   * chunks are loaded. */
  function renderList() {
    const run = ++renderRun;
    renderCount();
    const rows = list.subarray(page * PAGE, (page + 1) * PAGE);
    const chunks = new Map(); // rows chunk -> its value, undefined while not loaded
    const missing = new Set();
    for (const i of rows) {
      const k = Math.floor(i / meta.rows_chunk);
      if (chunks.has(k)) continue;
      const value = values.get(numbered("rows", k));
      chunks.set(k, value);
      if (value === undefined) missing.add(k);
    }
    const tbody = $("#conversations tbody");
    tbody.replaceChildren(...Array.from(rows, (i) => rowElement(i, chunks.get(Math.floor(i / meta.rows_chunk)))));
    if (rows.length === 0) {
      const searching = search && search.searched < search.files;
      const note = N === 0 ? "The export has no conversations." : searching ? "Searching…" : "No conversation matches.";
      tbody.append(h("tr", { class: "empty" }, h("td", { colspan: 10 }, note)));
    }
    if (missing.size === 0) {
      firstRowsDone();
      return;
    }
    Promise.all([...missing].map((k) => dataFile(numbered("rows", k)))).then(() => {
      if (run === renderRun) renderList();
    }, () => {});
  }

  function firstRowsDone() {
    if (!firstRows) return;
    firstRows = false;
    LB.timings.firstRows = performance.now();
    document.documentElement.dataset.ready = "1";
  }

  function rowElement(i, rows) {
    const f = meta.facets;
    const j = rows ? i - rows.start : -1;
    const op = table.operation[i];
    const domain = table.domain[i];
    const failed = table.failed[i];
    const reasons = failed === 0 ? [] : f.reason.filter((_, r) => failed & (1 << r));
    const link = "#conversation=" + i;
    return h(
      "tr",
      {
        dataset: { index: i },
        onclick: (event) => {
          if (event.target.closest("a") || String(window.getSelection())) return; // a link, or selecting text
          location.hash = link.slice(1);
        },
      },
      h("td", { class: "num" }, fmt(i)),
      h("td", { class: "id" }, h("a", { href: link }, rows ? rows.id[j] : "…")),
      h(
        "td",
        { class: "preview" },
        h("div", { class: rows ? "clamp" : "clamp loading" }, rows ? rows.first[j] : "loading…"),
      ),
      h("td", null, f.source[table.source[i]]),
      h("td", { class: "num" }, table.generation[i]),
      h("td", null, op < 0 ? "" : f.operation[op]),
      h("td", { class: "annotated" }, domain < 0 ? "" : f.domain[domain]),
      h("td", { class: "annotated num" }, table.quality[i] || ""),
      h("td", { class: "num" }, table.turns[i]),
      h(
        "td",
        {
          class: failed === 0 ? "in" : "out",
          title: reasons.length ? "Fails " + reasons.join(", ") : "In the filtered version",
        },
        failed === 0 ? "✓ in" : reasons.join(", "),
      ),
    );
  }

  // --- views and the URL hash ---------------------------------------------------------------

  let currentView = "";
  let listScroll = 0;
  const VIEW_NAMES = { conversations: "the list", rejections: "the rejections", map: "the map" };

  function route() {
    const params = hashParams();
    const conversation = params.get("conversation");
    let view = params.get("view") || "conversations";
    if (conversation !== null) view = "conversation";
    if (currentView === "conversations" && view !== "conversations") listScroll = window.scrollY;
    if (view !== "conversation") {
      // Where the conversation view's Back goes: the view a conversation was opened from.
      $("#back").href = "#" + location.hash.replace(/^#/, "");
      $("#back").textContent = "← Back to " + VIEW_NAMES[view];
    }
    $("#view-conversations").hidden = view !== "conversations";
    $("#conversation").hidden = view !== "conversation";
    $("#view-rejections").hidden = view !== "rejections";
    $("#view-map").hidden = view !== "map";
    const tab = view === "conversation" ? "conversations" : view;
    for (const name of ["conversations", "rejections", "map"]) {
      const link = $("#tab-" + name);
      link.classList.toggle("active", name === tab);
      if (name === tab) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const previous = currentView;
    currentView = view;
    if (view === "conversation") {
      showConversation(Number(conversation), params.get("show") || "messages");
    } else if (view === "conversations") {
      if (previous !== "conversations" && previous !== "") window.scrollTo(0, listScroll);
    } else if (view === "rejections") {
      openRejections(params);
    } else if (view === "map") {
      openMap();
    }
  }

  // --- one conversation ---------------------------------------------------------------------

  let conversationRun = 0;

  async function showConversation(i, show) {
    const run = ++conversationRun;
    const section = $("#conversation");
    const missing = !Number.isInteger(i) || i < 0 || i >= N;
    section.classList.toggle("missing", missing);
    if (missing) {
      delete section.dataset.index;
      $("#conversation-meta").replaceChildren();
      $("#conversation-title").textContent =
        "No conversation " + i + " (the run has " + plural(N, "conversation") + ")";
      $("#messages").replaceChildren();
      $("#lineage").replaceChildren();
      return;
    }
    if (section.dataset.index !== String(i)) {
      delete section.dataset.index;
      $("#conversation-title").textContent = "Conversation " + fmt(i) + " (loading…)";
      $("#conversation-meta").replaceChildren();
      $("#messages").replaceChildren();
      $("#lineage").replaceChildren();
      window.scrollTo(0, 0);
    }
    conversationNavigation(i, show);
    const k = Math.floor(i / meta.conv_chunk);
    let chunk;
    try {
      chunk = await dataFile(numbered("conv", k));
    } catch (error) {
      return;
    }
    if (run !== conversationRun) return;
    const c = chunk.items[i - chunk.start];
    if (section.dataset.index !== String(i)) {
      renderConversation(i, c);
      section.dataset.index = String(i);
    }
    $("#messages").hidden = show === "lineage";
    $("#lineage").hidden = show !== "lineage";
  }

  function conversationNavigation(i, show) {
    const link = (params) => "#" + new URLSearchParams(params).toString();
    $("#show-messages").href = link({ conversation: i });
    $("#show-lineage").href = link({ conversation: i, show: "lineage" });
    $("#show-messages").classList.toggle("active", show !== "lineage");
    $("#show-lineage").classList.toggle("active", show === "lineage");
    // Position in the list (binary search: list is ascending).
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid] < i) lo = mid + 1;
      else hi = mid;
    }
    const inList = lo < list.length && list[lo] === i;
    const previous = lo - 1 >= 0 ? list[lo - 1] : null;
    const next = inList ? (lo + 1 < list.length ? list[lo + 1] : null) : lo < list.length ? list[lo] : null;
    const keep = show === "lineage" ? { show: "lineage" } : {};
    for (const [id, target] of [["#conv-prev", previous], ["#conv-next", next]]) {
      const a = $(id);
      a.classList.toggle("disabled", target === null);
      a.href = target === null ? "#conversation=" + i : link({ conversation: target, ...keep });
    }
    $("#conv-position").textContent = inList
      ? fmt(lo + 1) + " of " + fmt(list.length) + " listed"
      : "not in the list's filters";
  }

  function fact(term, ...value) {
    return h("div", null, h("dt", null, term), h("dd", null, ...value));
  }

  function renderConversation(i, c) {
    $("#conversation-title").replaceChildren(
      "Conversation " + fmt(i) + " ",
      h("span", { class: "id" }, c.id),
    );
    const facts = [
      fact("Source", c.source),
      fact("Origin", c.origin),
      fact("Generation", String(c.generation), c.operation ? " (" + c.operation + ")" : ""),
      fact("Turns", String(c.turns)),
      fact(
        "Filtered version",
        c.failed.length === 0
          ? h("span", { class: "in" }, "✓ in it")
          : h("span", { class: "out" }, "not in it: fails " + c.failed.join(", ")),
      ),
    ];
    const scores = Object.entries(c.scores || {});
    if (scores.length) {
      facts.push(fact("Scores", scores.map(([name, value]) => h("span", { class: "chip" }, name + " " + value))));
    }
    const a = c.annotation;
    if (a) {
      facts.push(
        fact("Domain", a.domain),
        fact("Task type", a.task_type),
        fact("Difficulty", String(a.difficulty)),
        fact("Quality", String(a.quality)),
        fact("Harm", a.harm),
        fact("Judge's reason", h("span", { class: "text" }, a.reason)),
      );
    }
    if (c.passage) facts.push(fact("Passage", c.passage.file + " · " + c.passage.id));
    if (c.code_check && c.code_check.length) {
      facts.push(
        fact(
          "Code check",
          c.code_check.map((check) =>
            h(
              "span",
              { class: "chip", title: check.detail },
              "message " + check.message + " block " + check.block + " " + check.language + ": " + check.outcome,
            ),
          ),
        ),
      );
    }
    $("#conversation-meta").replaceChildren(...facts);
    $("#messages").replaceChildren(
      ...c.messages.map((message, m) =>
        h(
          "article",
          { class: "message " + message.role, dataset: { role: message.role } },
          h(
            "header",
            null,
            message.role === "user" ? "User" : "Assistant",
            h("span", { class: "turn" }, " · message " + (m + 1)),
          ),
          h("div", { class: "text" }, message.content),
        ),
      ),
    );
    $("#lineage").replaceChildren(renderLineage(c));
  }

  // --- lineage ------------------------------------------------------------------------------

  function renderLineage(c) {
    const events = c.lineage || [];
    if (events.length === 0) return h("p", { class: "hint" }, "No lineage recorded for this conversation.");
    let previous = null;
    const items = events.map((event, e) => {
      const facts = [
        h("span", { class: "event-step" }, event.step),
        h("span", { class: "event-stage" }, event.stage + (event.round ? " · round " + event.round : "")),
        h("span", { class: "kv" }, "model ", h("b", { class: "event-model" }, event.model)),
        h("span", { class: "kv" }, "seed ", h("b", { class: "event-seed" }, String(event.seed ?? "none"))),
        h("span", { class: "kv" }, "shard ", h("b", null, event.shard === null ? "–" : String(event.shard))),
      ];
      if (event.attempt) facts.push(h("span", { class: "kv" }, "attempt ", h("b", null, String(event.attempt))));
      if (event.generation) {
        facts.push(h("span", { class: "kv" }, "generation ", h("b", null, String(event.generation))));
      }
      if (event.operation) {
        const operation = h("b", { class: "event-operation" }, event.operation);
        facts.push(h("span", { class: "kv" }, "operation ", operation));
      }
      const body = [];
      if (event.note) body.push(h("p", { class: "event-note" }, event.note));
      if (event.shots && event.shots.length) {
        body.push(
          h(
            "details",
            { class: "shots" },
            h("summary", null, "The seed tasks its prompt showed (" + event.shots.length + ")"),
            h("ol", null, event.shots.map((shot) => h("li", null, exchange(shot)))),
          ),
        );
      }
      if (event.text) {
        body.push(previous === null ? exchange(event.text) : diffExchange(previous, event.text));
        previous = event.text;
      } else if (TEXT_STAGES.has(event.stage)) {
        body.push(
          h(
            "p",
            { class: "hint" },
            previous === null
              ? "The run's merged sets hold no text of this step for this record."
              : "The first exchange stayed as it was.",
          ),
        );
      }
      if (event.kinds && event.kinds.length) {
        body.push(
          h(
            "p",
            { class: "kinds" },
            "Follow-up kinds: ",
            event.kinds.map((kind, k) => h("span", { class: "chip", title: "user turn " + (k + 2) }, kind)),
          ),
        );
      }
      const record = new URLSearchParams({ view: "rejections", q: event.record });
      return h(
        "li",
        { class: "event", dataset: { step: event.step, stage: event.stage } },
        h("div", { class: "event-head" }, h("span", { class: "event-number" }, String(e + 1)), facts),
        body,
        h(
          "p",
          { class: "event-record" },
          "record ",
          h("span", { class: "id" }, event.record),
          " · ",
          h(
            "a",
            { href: "#" + record.toString(), title: "Rejected records whose id, input or text mention it" },
            "rejections that mention it",
          ),
        ),
      );
    });
    return h("ol", { class: "events" }, items);
  }

  const FIELDS = [["instruction", "Instruction"], ["input", "Input"], ["output", "Output"]];
  // The stages that write the first exchange (laerebogen/outputs/lineage.py's TEXT_STAGES).
  const TEXT_STAGES = new Set(["generation", "magpie", "grounded", "grammar", "quality", "evolution", "import"]);

  function exchange(text) {
    return h(
      "div",
      { class: "exchange" },
      FIELDS.filter(([key]) => text[key]).map(([key, label]) =>
        h("div", { class: "field" }, h("div", { class: "label" }, label), h("div", { class: "text" }, text[key])),
      ),
    );
  }

  function diffExchange(before, after) {
    return h(
      "div",
      { class: "exchange diff" },
      FIELDS.filter(([key]) => before[key] || after[key]).map(([key, label]) => {
        if (before[key] === after[key]) {
          return h(
            "details",
            { class: "field same" },
            h("summary", { class: "label" }, label + " (unchanged)"),
            h("div", { class: "text" }, after[key]),
          );
        }
        const parts = wordDiff(before[key], after[key]);
        let added = 0;
        let removed = 0;
        for (const [op, , words] of parts) {
          if (op === "+") added += words;
          if (op === "-") removed += words;
        }
        const words = (n) => n + (n === 1 ? " word" : " words");
        return h(
          "div",
          { class: "field" },
          h(
            "div",
            { class: "label" },
            label,
            h("span", { class: "changes" }, " " + words(added) + " added, " + removed + " removed"),
          ),
          h(
            "div",
            { class: "text" },
            parts.map(([op, text], k) => {
              if (op === "=") return text;
              // A replacement without whitespace between: keep the two marks apart.
              const touching = k > 0 && parts[k - 1][0] !== "=";
              return h(op === "+" ? "ins" : "del", { class: touching ? "touching" : null }, text);
            }),
          ),
        );
      }),
    );
  }

  const WORD = /[\p{L}\p{N}]/u;

  /** Words (runs of letters and digits) and single other characters, each with the
   * whitespace before it. */
  function tokens(text) {
    const out = [];
    const re = /(\s*)([\p{L}\p{N}_]+|\S)/gu;
    let match;
    let end = 0;
    while ((match = re.exec(text)) !== null) {
      out.push({ space: match[1], word: match[2] });
      end = re.lastIndex;
    }
    if (end < text.length) out.push({ space: text.slice(end), word: "" });
    return out;
  }

  /** A word diff of two texts: [op, text, words] parts, op "=" (as in b), "+" or "-". */
  function wordDiff(a, b) {
    const x = tokens(a);
    const y = tokens(b);
    let start = 0;
    while (start < x.length && start < y.length && x[start].word === y[start].word) start++;
    let endX = x.length;
    let endY = y.length;
    while (endX > start && endY > start && x[endX - 1].word === y[endY - 1].word) {
      endX--;
      endY--;
    }
    const ops = []; // [op, token]
    for (let k = 0; k < start; k++) ops.push(["=", y[k]]);
    const n = endX - start;
    const m = endY - start;
    if (n * m > 4e6) {
      for (let k = start; k < endX; k++) ops.push(["-", x[k]]);
      for (let k = start; k < endY; k++) ops.push(["+", y[k]]);
    } else if (n > 0 || m > 0) {
      // Longest common subsequence, suffix lengths: L[p][q] for x[start+p..], y[start+q..].
      const width = m + 1;
      const L = new Uint32Array((n + 1) * width);
      for (let p = n - 1; p >= 0; p--) {
        for (let q = m - 1; q >= 0; q--) {
          L[p * width + q] =
            x[start + p].word === y[start + q].word
              ? L[(p + 1) * width + q + 1] + 1
              : Math.max(L[(p + 1) * width + q], L[p * width + q + 1]);
        }
      }
      let p = 0;
      let q = 0;
      while (p < n || q < m) {
        if (p < n && q < m && x[start + p].word === y[start + q].word) {
          ops.push(["=", y[start + q]]);
          p++;
          q++;
        } else if (p < n && (q === m || L[(p + 1) * width + q] >= L[p * width + q + 1])) {
          ops.push(["-", x[start + p]]);
          p++;
        } else {
          ops.push(["+", y[start + q]]);
          q++;
        }
      }
    }
    for (let k = endY; k < y.length; k++) ops.push(["=", y[k]]);
    // Merge runs; a changed run's leading whitespace stays outside its mark.
    const parts = [];
    for (const [op, token] of ops) {
      const last = parts[parts.length - 1];
      const counts = WORD.test(token.word) ? 1 : 0; // punctuation is no word
      if (last && last[0] === op) {
        last[1] += token.space + token.word;
        last[2] += counts;
      } else {
        if (op !== "=" && token.space) {
          if (last && last[0] === "=") last[1] += token.space;
          else parts.push(["=", token.space, 0]);
        }
        parts.push([op, op === "=" ? token.space + token.word : token.word, counts]);
      }
    }
    return parts;
  }

  LB.wordDiff = wordDiff; // for tests and for users' consoles

  // --- rejections ---------------------------------------------------------------------------

  const rejections = {
    key: null, // the query being shown: step, reason, text
    run: 0,
    page: 0,
    matches: [], // [step, item] of the records that match, in file order
    total: 0, // of the query, known up front without a text or reason filter
    searched: 0,
    files: 0,
    direct: false, // no reason or text: a page is read from the files it falls in
    done: false,
  };

  function rejectionSteps() {
    return (meta.rejections && meta.rejections.steps) || [];
  }

  function setUpRejections() {
    const steps = rejectionSteps();
    const rejected = new Map(steps.map((s) => [s.step, s]));
    const rows = meta.steps.map((s) => {
      const r = rejected.get(s.step);
      rejected.delete(s.step);
      return stepRow(s.step, s.stage, s.round, s.records_in, s.kept, r);
    });
    for (const r of rejected.values()) rows.push(stepRow(r.step, r.stage, null, null, null, r));
    $("#steps tbody").replaceChildren(...rows);
    const filtered = meta.conversations - meta.filtered;
    $("#export-summary").replaceChildren(
      "The export: " + plural(meta.conversations, "conversation") + " in the complete version, ",
      fmt(meta.filtered) + " of them in the filtered version (",
      h("a", { href: "#", onclick: showNotFiltered }, fmt(filtered) + " fail its filters"),
      "); " + plural(meta.removed, "conversation") + " removed from both versions by decontamination.",
    );
    selectOptions($("#rejections-step"), [
      ["", "All steps (" + fmt(meta.rejections.total) + ")"],
      ...steps.map((s) => [s.step, s.step + " (" + fmt(s.count) + ")"]),
    ]);
    updateReasonOptions();
    const change = () => {
      const params = new URLSearchParams({ view: "rejections" });
      if ($("#rejections-step").value) params.set("step", $("#rejections-step").value);
      if ($("#rejections-reason").value) params.set("reason", $("#rejections-reason").value);
      if ($("#rejections-search").value.trim()) params.set("q", $("#rejections-search").value.trim());
      setHash(params, true);
      runRejections();
    };
    $("#rejections-step").addEventListener("change", () => {
      updateReasonOptions();
      change();
    });
    $("#rejections-reason").addEventListener("change", change);
    $("#rejections-filters").addEventListener("submit", (event) => event.preventDefault());
    let typing = 0;
    $("#rejections-search").addEventListener("input", () => {
      delete $("#rejections-count").dataset.done; // a search is due
      clearTimeout(typing);
      typing = setTimeout(change, 250);
    });
    $("#rejections-prev").addEventListener("click", () => turnRejections(-1));
    $("#rejections-next").addEventListener("click", () => turnRejections(1));
  }

  function showNotFiltered(event) {
    event.preventDefault();
    $("#filter-version").value = "out";
    page = 0;
    applyFilters();
    renderList();
    location.hash = "";
  }

  function stepRow(step, stage, round, recordsIn, kept, rejected) {
    const link = (reason, label) => {
      const params = new URLSearchParams({ view: "rejections", step });
      if (reason) params.set("reason", reason);
      return h("a", { href: "#" + params.toString() }, label);
    };
    const reasons = rejected ? Object.entries(rejected.reasons).sort((a, b) => b[1] - a[1]) : [];
    return h(
      "tr",
      { dataset: { step } },
      h("td", null, h("b", null, step)),
      h("td", null, stage),
      h("td", { class: "num" }, round ? String(round) : "–"),
      h("td", { class: "num" }, recordsIn === null ? "" : fmt(recordsIn)),
      h("td", { class: "num" }, kept === null ? "" : fmt(kept)),
      h("td", { class: "num" }, rejected && rejected.count ? link(null, fmt(rejected.count)) : "0"),
      h(
        "td",
        { class: "reasons" },
        reasons.map(([reason, count]) => h("span", { class: "chip" }, link(reason, reason + " " + fmt(count)))),
      ),
    );
  }

  function updateReasonOptions() {
    const step = $("#rejections-step").value;
    const counts = new Map();
    for (const s of rejectionSteps()) {
      if (step && s.step !== step) continue;
      for (const [reason, count] of Object.entries(s.reasons)) counts.set(reason, (counts.get(reason) || 0) + count);
    }
    const reasons = [...counts.entries()].sort((a, b) => b[1] - a[1]);
    selectOptions($("#rejections-reason"), [
      ["", "All reasons"],
      ...reasons.map(([reason, count]) => [reason, reason + " (" + fmt(count) + ")"]),
    ]);
  }

  function openRejections(params) {
    const step = params.get("step") || "";
    const reason = params.get("reason") || "";
    const q = params.get("q") || "";
    if ($("#rejections-step").value !== step) {
      $("#rejections-step").value = step;
      if ($("#rejections-step").value !== step) showError("No rejections of a step " + step);
      updateReasonOptions();
    }
    $("#rejections-reason").value = reason;
    if (reason && $("#rejections-reason").value !== reason) {
      // A reason the step has not: keep it selectable so the empty result says why.
      $("#rejections-reason").append(h("option", { value: reason }, reason + " (0)"));
      $("#rejections-reason").value = reason;
    }
    if ($("#rejections-search").value.trim() !== q) $("#rejections-search").value = q;
    runRejections();
  }

  /** The rejects files of the chosen steps, in order: [step meta, file name]. */
  function rejectionFiles(step) {
    const files = [];
    for (const s of rejectionSteps()) {
      if (step && s.step !== step) continue;
      for (const name of s.chunks) files.push([s, name]);
    }
    return files;
  }

  async function runRejections() {
    const step = $("#rejections-step").value;
    const reason = $("#rejections-reason").value;
    const query = $("#rejections-search").value.trim();
    const key = JSON.stringify([step, reason, query]);
    if (key === rejections.key) return;
    const run = ++rejections.run;
    const files = rejectionFiles(step);
    const chosen = rejectionSteps().filter((s) => !step || s.step === step);
    Object.assign(rejections, {
      key, page: 0, matches: [], searched: 0, files: files.length, done: false,
      direct: !reason && !query,
      total: chosen.reduce((sum, s) => sum + (reason ? s.reasons[reason] || 0 : s.count), 0),
      chosen,
    });
    if (rejections.direct) {
      rejections.done = true;
      renderRejections();
      return;
    }
    const tests = matchers(query);
    const texts = (item) => {
      const record = item.record;
      const all = [item.detail, item.raw, item.source || ""];
      return record ? all.concat(record.id, record.instruction, record.input, record.output) : all;
    };
    const matches = (item) => {
      const fields = texts(item);
      return tests.every((test) => fields.some((text) => test.test(text)));
    };
    renderRejections();
    let shown = performance.now();
    for (const [s, name] of files) {
      const wasLoaded = values.has(name);
      let chunk;
      try {
        chunk = await dataFile(name);
      } catch (error) {
        return;
      }
      if (run !== rejections.run) return;
      for (const item of chunk.items) {
        if (reason && item.reason !== reason) continue;
        if (tests.length && !matches(item)) continue;
        rejections.matches.push([s.step, item]);
      }
      rejections.searched += 1;
      if (performance.now() - shown >= PROGRESS_MS && rejections.searched < files.length) {
        shown = performance.now();
        renderRejections();
      }
      const pause = wasLoaded ? breathe() : null;
      if (pause !== null) {
        await pause;
        if (run !== rejections.run) return;
      }
    }
    rejections.done = true;
    renderRejections();
  }

  function turnRejections(by) {
    const total = rejections.direct ? rejections.total : rejections.matches.length;
    const last = Math.max(0, Math.ceil(total / REJECTS_PAGE) - 1);
    rejections.page = Math.min(last, Math.max(0, rejections.page + by));
    renderRejections();
    $("#rejections-count").scrollIntoView({ block: "nearest" });
  }

  let rejectionsRender = 0;

  async function renderRejections() {
    const render = ++rejectionsRender;
    const r = rejections;
    const count = $("#rejections-count");
    const shown = r.direct ? r.total : r.matches.length;
    const all = meta.rejections.total;
    let text;
    if (r.direct) {
      const of = r.total === all ? "" : " of " + fmt(all);
      text = fmt(r.total) + of + (r.total === 1 ? " rejection" : " rejections");
    } else if (r.done) {
      text = fmt(shown) + " of " + fmt(all) + " rejections match";
    } else {
      const searched = fmt(r.searched) + " of " + plural(r.files, "file");
      text = fmt(shown) + " of " + fmt(all) + " rejections match so far: searched " + searched;
    }
    count.textContent = text;
    if (r.done) count.dataset.done = "1";
    else delete count.dataset.done;
    const pages = Math.max(1, Math.ceil(shown / REJECTS_PAGE));
    $("#rejections-page-info").textContent = "Page " + fmt(r.page + 1) + " of " + fmt(pages) + (r.done ? "" : "+");
    $("#rejections-prev").disabled = r.page === 0;
    $("#rejections-next").disabled = r.done && r.page >= pages - 1;
    const from = r.page * REJECTS_PAGE;
    let items;
    if (r.direct) {
      items = await directRejections(from, Math.min(r.total, from + REJECTS_PAGE));
      if (render !== rejectionsRender) return;
    } else {
      items = r.matches.slice(from, from + REJECTS_PAGE);
    }
    const listEl = $("#rejections-list");
    listEl.start = from + 1;
    listEl.replaceChildren(...items.map(([step, item]) => rejectElement(step, item)));
    if (items.length === 0) {
      listEl.append(h("li", { class: "empty" }, r.done ? "No rejected record matches." : "Searching…"));
    }
  }

  /** Rejections [from, to) of the chosen steps, reading only the files they are in. */
  async function directRejections(from, to) {
    const size = meta.rejections.chunk;
    const wanted = []; // [step, file name, offset in step]
    let offset = 0;
    for (const s of rejections.chosen) {
      for (let g = Math.max(from, offset); g < Math.min(to, offset + s.count); g++) {
        const j = g - offset;
        wanted.push([s.step, s.chunks[Math.floor(j / size)], j]);
      }
      offset += s.count;
    }
    let files;
    try {
      files = await Promise.all(wanted.map(([, name]) => dataFile(name)));
    } catch (error) {
      return [];
    }
    return wanted.map(([step, , j], w) => [step, files[w].items[j - files[w].start]]).filter(([, item]) => item);
  }

  function rejectElement(step, item) {
    const record = item.record;
    return h(
      "li",
      { class: "reject", dataset: { step, reason: item.reason } },
      h(
        "div",
        { class: "event-head" },
        h("span", { class: "reason" }, item.reason),
        h("span", { class: "event-step" }, step),
        item.shard === null
          ? h("span", { class: "kv" }, "the step's merge")
          : h("span", { class: "kv" }, "shard ", h("b", null, String(item.shard))),
        item.source ? h("span", { class: "kv" }, "input ", h("span", { class: "id" }, item.source)) : null,
        record ? h("span", { class: "kv" }, "record ", h("span", { class: "id" }, record.id)) : null,
      ),
      item.detail ? h("p", { class: "detail text" }, item.detail) : null,
      record ? exchange(record) : null,
      item.raw
        ? h(
            "details",
            { class: "raw", open: record ? null : true },
            h("summary", null, "Raw model output"),
            h("div", { class: "text" }, item.raw),
          )
        : null,
    );
  }

  // --- map ----------------------------------------------------------------------------------

  const PALETTE = [
    "#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5",
    "#9c6b4e", "#9498a0", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
  ];
  const colourOf = (c) => (c < PALETTE.length ? PALETTE[c] : "hsl(" + ((c * 137.508) % 360).toFixed(1) + " 60% 50%)");

  const mapState = {
    ready: false, loading: false, data: null, hidden: new Set(), byColour: [],
    // view: data coordinates of the canvas centre and pixels per unit
    cx: 0, cy: 0, scale: 1, fit: null, width: 0, height: 0, hover: -1, drag: null,
  };

  function setUpMap() {
    const note = $("#map-note");
    if (!meta.map) {
      note.textContent = "This run has no map.";
      for (const element of document.querySelectorAll(".needs-map")) element.hidden = true;
      return;
    }
    const m = meta.map;
    note.textContent = m.sampled
      ? fmt(m.points) + " of " + fmt(m.total) + " instructions shown, a uniform sample; colour: " + m.colour_by
      : plural(m.points, "instruction") + " shown; colour: " + m.colour_by;
    $("#map-match-filters").addEventListener("change", drawMap);
    $("#map-reset").addEventListener("click", () => {
      fitMap();
      drawMap();
    });
    const canvas = $("#map-canvas");
    canvas.addEventListener("mousemove", mapHover);
    canvas.addEventListener("mouseleave", () => setHover(-1));
    canvas.addEventListener("mousedown", (event) => {
      mapState.drag = { x: event.clientX, y: event.clientY, cx: mapState.cx, cy: mapState.cy, moved: false };
    });
    window.addEventListener("mouseup", () => {
      setTimeout(() => (mapState.drag = null), 0);
    });
    canvas.addEventListener("click", () => {
      if (mapState.drag && mapState.drag.moved) return;
      if (mapState.hover >= 0) location.hash = "conversation=" + mapState.data.row[mapState.hover];
    });
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      const rect = canvas.getBoundingClientRect();
      const [x, y] = toData(event.clientX - rect.left, event.clientY - rect.top);
      const factor = Math.exp(-event.deltaY * 0.0015);
      mapState.scale *= factor;
      mapState.cx = x - (x - mapState.cx) / factor;
      mapState.cy = y - (y - mapState.cy) / factor;
      setHover(-1);
      drawMap();
    }, { passive: false });
    new ResizeObserver(() => {
      if (mapState.ready && !$("#view-map").hidden) drawMap();
    }).observe($("#map"));
  }

  async function openMap() {
    if (!meta.map || mapState.ready || mapState.loading) {
      if (mapState.ready) drawMap();
      return;
    }
    mapState.loading = true;
    $("#map").classList.add("loading");
    let data;
    try {
      data = await dataFile("map");
    } catch (error) {
      return;
    }
    $("#map").classList.remove("loading");
    mapState.data = data;
    const labels = meta.map.labels;
    mapState.byColour = labels.map(() => []);
    data.colour.forEach((c, p) => {
      if (!mapState.byColour[c]) mapState.byColour[c] = [];
      mapState.byColour[c].push(p);
    });
    renderLegend();
    mapState.ready = true;
    fitMap();
    drawMap();
    $("#map").dataset.ready = "1";
  }

  function renderLegend() {
    const labels = meta.map.labels;
    $("#map-legend").replaceChildren(
      ...mapState.byColour.map((points, c) => {
        const item = h(
          "li",
          { dataset: { colour: c }, title: "Click to show or hide" },
          h("span", { class: "swatch", style: "background:" + colourOf(c) }),
          h("span", { class: "label" }, labels[c] === undefined ? "colour " + c : labels[c]),
          h("span", { class: "n" }, fmt(points.length)),
        );
        item.addEventListener("click", () => {
          if (mapState.hidden.has(c)) mapState.hidden.delete(c);
          else mapState.hidden.add(c);
          item.classList.toggle("off", mapState.hidden.has(c));
          drawMap();
        });
        return item;
      }),
    );
  }

  function fitMap() {
    const { x, y } = mapState.data;
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (let p = 0; p < x.length; p++) {
      if (x[p] < x0) x0 = x[p];
      if (x[p] > x1) x1 = x[p];
      if (y[p] < y0) y0 = y[p];
      if (y[p] > y1) y1 = y[p];
    }
    if (!Number.isFinite(x0)) [x0, x1, y0, y1] = [-1, 1, -1, 1];
    mapState.fit = { w: Math.max(x1 - x0, 1e-9), h: Math.max(y1 - y0, 1e-9) };
    mapState.cx = (x0 + x1) / 2;
    mapState.cy = (y0 + y1) / 2;
    mapState.scale = 0; // set from the canvas size when drawn
  }

  const toScreen = (x, y) => [
    mapState.width / 2 + (x - mapState.cx) * mapState.scale,
    mapState.height / 2 - (y - mapState.cy) * mapState.scale,
  ];
  const toData = (sx, sy) => [
    mapState.cx + (sx - mapState.width / 2) / mapState.scale,
    mapState.cy - (sy - mapState.height / 2) / mapState.scale,
  ];

  function drawMap() {
    if (!mapState.ready || $("#view-map").hidden) return;
    const canvas = $("#map-canvas");
    const box = $("#map");
    const width = box.clientWidth;
    const height = box.clientHeight;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.width = width + "px";
      canvas.style.height = height + "px";
    }
    mapState.width = width;
    mapState.height = height;
    if (mapState.scale === 0) {
      mapState.scale = 0.92 * Math.min(width / mapState.fit.w, height / mapState.fit.h);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const { x, y } = mapState.data;
    const points = mapState.data.x.length;
    const size = points > 50000 ? 2 : points > 5000 ? 3 : 5;
    const grey = $("#map-match-filters").checked && listed !== null;
    const half = size / 2;
    if (grey) {
      ctx.fillStyle = "rgba(140, 140, 140, 0.25)";
      mapState.byColour.forEach((points, c) => {
        if (mapState.hidden.has(c)) return;
        for (const p of points) {
          if (listed[mapState.data.row[p]]) continue;
          const [sx, sy] = toScreen(x[p], y[p]);
          ctx.fillRect(sx - half, sy - half, size, size);
        }
      });
    }
    ctx.globalAlpha = 0.8;
    mapState.byColour.forEach((points, c) => {
      if (mapState.hidden.has(c)) return;
      ctx.fillStyle = colourOf(c);
      for (const p of points) {
        if (grey && !listed[mapState.data.row[p]]) continue;
        const [sx, sy] = toScreen(x[p], y[p]);
        if (sx < -size || sy < -size || sx > width + size || sy > height + size) continue;
        ctx.fillRect(sx - half, sy - half, size, size);
      }
    });
    ctx.globalAlpha = 1;
  }

  /** Where map point p is drawn: CSS pixels from the canvas's top left (for tests). */
  LB.mapPosition = (p) => (mapState.ready ? toScreen(mapState.data.x[p], mapState.data.y[p]) : null);

  let hoverFrame = 0;
  function mapHover(event) {
    const canvas = $("#map-canvas");
    const rect = canvas.getBoundingClientRect();
    const sx = event.clientX - rect.left;
    const sy = event.clientY - rect.top;
    const drag = mapState.drag;
    if (drag && (event.buttons & 1) === 1) {
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
      if (drag.moved) {
        mapState.cx = drag.cx - dx / mapState.scale;
        mapState.cy = drag.cy + dy / mapState.scale;
        setHover(-1);
        drawMap();
        return;
      }
    }
    cancelAnimationFrame(hoverFrame);
    hoverFrame = requestAnimationFrame(() => setHover(nearestPoint(sx, sy), sx, sy));
  }

  function nearestPoint(sx, sy) {
    const { x, y, colour } = mapState.data;
    const grey = $("#map-match-filters").checked && listed !== null;
    let best = -1;
    let bestDistance = 8 * 8;
    for (let p = 0; p < x.length; p++) {
      if (mapState.hidden.has(colour[p])) continue;
      if (grey && !listed[mapState.data.row[p]]) continue;
      const [px, py] = toScreen(x[p], y[p]);
      const d = (px - sx) * (px - sx) + (py - sy) * (py - sy);
      if (d < bestDistance) {
        bestDistance = d;
        best = p;
      }
    }
    return best;
  }

  function setHover(p, sx, sy) {
    mapState.hover = p;
    const tip = $("#map-tooltip");
    const marker = $("#map-marker");
    const canvas = $("#map-canvas");
    canvas.style.cursor = p >= 0 ? "pointer" : "";
    if (p < 0) {
      tip.hidden = true;
      marker.hidden = true;
      return;
    }
    const data = mapState.data;
    const [px, py] = toScreen(data.x[p], data.y[p]);
    marker.style.left = px + "px";
    marker.style.top = py + "px";
    marker.hidden = false;
    const label = meta.map.labels[data.colour[p]];
    tip.replaceChildren(
      h("div", { class: "tip-text" }, data.text[p]),
      h("div", { class: "tip-meta" }, "conversation " + fmt(data.row[p]) + (label === undefined ? "" : " · " + label)),
    );
    tip.hidden = false;
    const box = $("#map");
    const left = Math.min(sx + 14, box.clientWidth - tip.offsetWidth - 4);
    const top = sy + 14 + tip.offsetHeight > box.clientHeight ? sy - tip.offsetHeight - 10 : sy + 14;
    tip.style.left = Math.max(4, left) + "px";
    tip.style.top = Math.max(4, top) + "px";
  }

  // --- keys -----------------------------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    if (currentView !== "conversation" || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target.closest("input, select, textarea")) return;
    const target = event.key === "ArrowLeft" ? "#conv-prev" : event.key === "ArrowRight" ? "#conv-next" : null;
    if (target && !$(target).classList.contains("disabled")) location.hash = $(target).getAttribute("href").slice(1);
    if (event.key === "Escape") $("#back").click();
  });

  start().catch(showError);
})();
