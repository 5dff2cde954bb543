/* refstack-farm: the dashboard's and the report's one script (no library, no build).
   The test table's filters and grouping; live updates by Server-Sent Events. Everything
   received is put into the page as text (textContent), never as HTML. */
(function () {
  "use strict";
  var FINAL = ["passed", "failed", "error", "cancelled", "timed_out", "rejected"];

  // ---- the test table: filter by outcome, search, group by class ----------------------
  function setupTable(table) {
    var status = document.getElementById("t-status");
    var search = document.getElementById("t-search");
    var group = document.getElementById("t-group");
    var shown = document.getElementById("t-shown");
    var rows = [], heads = [], head = null;
    // a row's class is the group row before it; its name, its first cell's text
    Array.prototype.forEach.call(table.tBodies[0].rows, function (tr) {
      if (tr.classList.contains("grp")) { head = { tr: tr, folded: false }; heads.push(head); }
      else { rows.push({ tr: tr, head: head, name: tr.cells[0].textContent.toLowerCase() }); }
    });
    function apply() {
      var want = status ? status.value : "";
      var text = search ? search.value.trim().toLowerCase() : "";
      var grouped = group && group.checked;
      var count = 0;
      rows.forEach(function (r) {
        var ok = (!want || r.tr.dataset.o === want) && (!text || r.name.indexOf(text) >= 0);
        r.tr.hidden = !ok || (grouped && r.head !== null && r.head.folded);
        if (ok) { count += 1; }
      });
      heads.forEach(function (h) { h.tr.hidden = !grouped; });
      if (shown) { shown.textContent = String(count); }
    }
    heads.forEach(function (h) {
      h.tr.addEventListener("click", function () { h.folded = !h.folded; apply(); });
    });
    [status, search, group].forEach(function (el) {
      if (el) { el.addEventListener("input", apply); el.addEventListener("change", apply); }
    });
    apply();
  }

  // ---- times ----------------------------------------------------------------------------
  function seconds(s) {
    s = Math.max(0, Math.round(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + " h " : "") + (h || m ? m + " min " : "") + r + " s";
  }
  function tick() {
    document.querySelectorAll("[data-started]").forEach(function (el) {
      var started = Date.parse(el.dataset.started || "");
      if (isNaN(started)) { return; }
      var end = Date.parse(el.dataset.finished || "");
      var now = isNaN(end) ? Date.now() : end;
      var elapsed = (now - started) / 1000;
      var e = el.querySelector("[data-f=elapsed]");
      if (e) { e.textContent = seconds(elapsed); }
      var eta = el.querySelector("[data-f=eta]");
      var expected = parseFloat(el.dataset.eta || "");
      if (eta) {
        if (!isNaN(end)) { eta.textContent = "ended"; }
        else if (isNaN(expected)) { eta.textContent = "no earlier run of this selection"; }
        else if (expected > elapsed) { eta.textContent = "about " + seconds(expected - elapsed) + " left"; }
        else { eta.textContent = "longer than the earlier runs (" + seconds(expected) + ")"; }
      }
    });
  }

  // ---- live updates ---------------------------------------------------------------------
  function setField(scope, name, value) {
    scope.querySelectorAll("[data-f=" + name + "]").forEach(function (el) {
      el.textContent = value === null || value === undefined ? "" : String(value);
    });
  }
  function update(scope, v) {
    scope.querySelectorAll("[data-f=state]").forEach(function (el) {
      el.textContent = v.state;
      el.className = "state " + v.state;
    });
    var p = v.progress || {}, c = v.summary || {};
    setField(scope, "done", p.done || c.done || 0);
    setField(scope, "total", p.total || c.total || 0);
    setField(scope, "current", p.current || "");
    setField(scope, "message", v.message);
    setField(scope, "worker", v.worker || "");
    setField(scope, "cpid", v.cpid || "");
    ["passed", "failed", "skipped"].forEach(function (k) { setField(scope, k, c[k] || 0); });
    scope.querySelectorAll("progress[data-f=bar]").forEach(function (el) {
      el.max = Math.max(1, p.total || c.total || 0);
      el.value = p.done || c.done || 0;
    });
    if (v.started_at) { scope.dataset.started = v.started_at; }
    if (v.finished_at) { scope.dataset.finished = v.finished_at; }
  }
  function newRow(v) {
    var tpl = document.getElementById("run-row");
    var body = document.getElementById("runs-body");
    if (!tpl || !body || body.dataset.prepend !== "1") { return null; }
    var tr = tpl.content.firstElementChild.cloneNode(true);
    tr.dataset.test = v.id;
    var a = tr.querySelector("a[data-f=link]");
    a.href = a.getAttribute("href") + encodeURIComponent(v.id);
    a.textContent = v.id;
    setField(tr, "version", v.tempest_version);
    setField(tr, "guideline", v.guideline ? v.guideline.version + " " + (v.guideline.target || "") : "");
    setField(tr, "created", (v.created_at || "").replace("T", " ").replace("+00:00", ""));
    var empty = document.getElementById("runs-empty");
    if (empty) { empty.remove(); }
    body.insertBefore(tr, body.firstElementChild);
    return tr;
  }
  function addHistory(r) {
    var body = document.getElementById("history-body");
    if (!body) { return; }
    var tr = document.createElement("tr");
    [(r.at || "").replace("T", " ").replace("+00:00", ""), r.source, r.worker || "", r.state,
     r.message || "", r.applied ? "" : "not applied"].forEach(function (text) {
      var td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
  function live(root) {
    var banner = document.getElementById("live");
    var base = root.dataset.live;
    var last = root.dataset.since || "";
    var source = null;
    function say(cls, text) {
      if (!banner) { return; }
      banner.className = "banner " + cls;
      banner.textContent = text;
    }
    function connect() {
      var url = base + (base.indexOf("?") >= 0 ? "&" : "?") + "since=" + encodeURIComponent(last);
      source = new EventSource(url);
      source.onopen = function () { say("live", "Live: updates as the workers report."); };
      source.addEventListener("test", function (e) {
        last = e.lastEventId || last;
        var v = JSON.parse(e.data);
        var scope = document.querySelector('[data-test="' + CSS.escape(v.id) + '"]') || newRow(v);
        if (scope) { update(scope, v); }
      });
      source.addEventListener("report", function (e) {
        last = e.lastEventId || last;
        addHistory(JSON.parse(e.data));
      });
      source.addEventListener("end", function (e) {
        var v = JSON.parse(e.data);
        source.close();
        var scope = document.querySelector('[data-test="' + CSS.escape(v.id) + '"]');
        if (scope) { update(scope, v); }
        say("ended", "The run ended: " + v.state + ". " + (v.message || ""));
        if (v.has_results && root.dataset.results === "0") {
          // the page reloads itself: it is "ended" (settled) once the reloaded page says so
          say("ended", "The run ended: " + v.state + ". Loading its results...");
          window.setTimeout(function () { window.location.reload(); }, 300);
        } else {
          document.body.dataset.ended = v.state;
        }
      });
      source.onerror = function () {
        say("down", "Disconnected, retrying...");
        if (source.readyState === EventSource.CLOSED) {  // refused (e.g. 503): try again
          window.setTimeout(connect, 2000);
        }
      };
    }
    connect();
  }

  // ---- pages that refresh themselves (queue and workers) ------------------------------------
  function refresh(el) {
    var every = parseFloat(el.dataset.refresh) * 1000;
    window.setInterval(function () {
      fetch(window.location.href, { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) { throw new Error(String(r.status)); }
        return r.text();
      }).then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById(el.id);
        if (fresh) { el.replaceWith(fresh); el = fresh; }
        var b = document.getElementById("live");
        if (b) { b.className = "banner live"; b.textContent = "Refreshed every " + el.dataset.refresh + " s."; }
      }).catch(function () {
        var b = document.getElementById("live");
        if (b) { b.className = "banner down"; b.textContent = "Disconnected, retrying..."; }
      });
    }, every);
  }

  function start() {
    var table = document.getElementById("tests");
    if (table) { setupTable(table); }
    var root = document.querySelector("[data-live]");
    if (root && window.EventSource) { live(root); }
    var r = document.querySelector("[data-refresh]");
    if (r) { refresh(r); }
    tick();
    window.setInterval(tick, 1000);
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); }
  else { start(); }
}());
