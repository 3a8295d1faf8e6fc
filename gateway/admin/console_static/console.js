// The operator console (docs/admin-api.md "Console"). No library, nothing from elsewhere.
// The admin token lives in sessionStorage (this tab only) and goes out as a Bearer header
// on every fetch; the live stream is read with fetch() so that it can carry that header.
// Every value from the gateway is written with textContent, never as HTML.
"use strict";

const KEY = "cpim-console-token";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(KEY) || "";
let stream = null; // AbortController of the live stream
let lastSeq = -1;
let lastFilter = "";
let actionsOn = false;

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

function setStatus(state, text) {
  const s = $("status");
  s.dataset.state = state;
  s.textContent = text;
}

function cell(tr, value, cls) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "" : String(value);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fill(tableId, rows, render) {
  const body = $(tableId).tBodies[0];
  const out = document.createDocumentFragment();
  for (const row of rows) {
    const tr = document.createElement("tr");
    render(tr, row);
    out.appendChild(tr);
  }
  body.replaceChildren(out);
}

function inSeconds(at, now) {
  if (at === null || at === undefined) return "";
  const left = at - now;
  return left > 1e8 ? "never" : Math.max(0, Math.round(left)) + " s";
}

function clock(at) {
  return at ? new Date(at * 1000).toLocaleTimeString() : "";
}

function sparkline(id, values) {
  const svg = $(id);
  const max = Math.max(1e-9, ...values);
  const step = values.length > 1 ? 240 / (values.length - 1) : 0;
  const points = values.map((v, i) => (i * step).toFixed(1) + "," + (46 - (v / max) * 44).toFixed(1));
  let line = svg.querySelector("polyline");
  if (!line) {
    line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    svg.appendChild(line);
  }
  line.setAttribute("points", points.join(" "));
}

function render(snap) {
  const now = snap.at;
  fill("links", snap.links, (tr, l) => {
    cell(tr, l.domain);
    cell(tr, l.state, "state-" + l.state);
    cell(tr, clock(l.since));
    cell(tr, l.failures);
    cell(tr, l.queued);
    cell(tr, l.last_error);
  });
  fill("listeners", snap.listeners, (tr, l) => { cell(tr, l.name); cell(tr, l.transport); });
  const regs = snap.registrations;
  $("registrations-count").textContent = regs.count + (regs.truncated ? " (first " + regs.rows.length + ")" : "");
  fill("registrations", regs.rows, (tr, r) => {
    cell(tr, r.aor); cell(tr, r.contact); cell(tr, r.transport); cell(tr, inSeconds(r.expires_at, now));
  });
  const subs = snap.subscriptions;
  $("subscriptions-count").textContent = subs.count + (subs.truncated ? " (first " + subs.rows.length + ")" : "");
  fill("subscriptions", subs.rows, (tr, s) => {
    cell(tr, s.direction === "s2x" ? "SIP watches XMPP" : "XMPP watches SIP");
    cell(tr, s.watcher); cell(tr, s.target); cell(tr, s.state); cell(tr, s.authorization);
    cell(tr, inSeconds(s.expires_at, now));
  });
  actionsOn = snap.actions.enabled;
  fill("pending", snap.pending, (tr, p) => {
    cell(tr, p.aor); cell(tr, p.watcher);
    const td = cell(tr, "");
    for (const verdict of ["allow", "deny"]) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = verdict;
      b.disabled = !(actionsOn && snap.actions.authorization);
      b.addEventListener("click", () => act("authorization", { aor: p.aor, watcher: p.watcher, verdict }));
      td.appendChild(b);
    }
  });
  $("actions-off").hidden = actionsOn;
  for (const kind of ["sip", "xmpp"]) {
    const b = $("trace-" + kind);
    const on = snap.trace ? snap.trace[kind] : null;
    b.dataset.on = String(on);
    b.textContent = on === null ? "n/a" : on ? "on (switch off)" : "off (switch on)";
    b.disabled = !(actionsOn && snap.actions.trace && on !== null);
  }
  $("drain").disabled = !(actionsOn && snap.actions.drain);
  const chart = snap.chart;
  sparkline("chart-rate", chart.map((s) => s.rate));
  sparkline("chart-errors", chart.map((s) => s.errors));
  sparkline("chart-latency", chart.map((s) => s.latency_ms));
  const last = chart.length ? chart[chart.length - 1] : { rate: 0, errors: 0, latency_ms: 0 };
  $("now-rate").textContent = last.rate.toFixed(1);
  $("now-errors").textContent = last.errors.toFixed(1);
  $("now-latency").textContent = last.latency_ms.toFixed(1);
  if (snap.fates.seq !== lastSeq || filterQuery() !== lastFilter) loadFates(snap.fates.seq);
}

function filterQuery() {
  const q = new URLSearchParams();
  if ($("f-direction").value) q.set("direction", $("f-direction").value);
  if ($("f-fate").value) q.set("fate", $("f-fate").value);
  if ($("f-q").value) q.set("q", $("f-q").value);
  return q.toString();
}

async function loadFates(seq) {
  const query = filterQuery();
  const r = await fetch("/console/api/fates?" + query, { headers: headers() });
  const body = await r.json();
  if (!r.ok) {
    $("filter-error").textContent = body.error || r.statusText;
    return;
  }
  $("filter-error").textContent = "";
  lastSeq = seq === undefined ? body.seq : seq;
  lastFilter = query;
  $("fates-count").textContent = body.fates.length + " shown, last " + body.limit + " kept";
  fill("fates", body.fates, (tr, f) => {
    tr.dataset.fate = f.fate;
    cell(tr, clock(f.at)); cell(tr, f.direction); cell(tr, f.sender); cell(tr, f.recipient);
    cell(tr, f.fate, "fate-" + f.fate); cell(tr, f.status); cell(tr, (f.seconds * 1000).toFixed(1));
    cell(tr, f.call_id); cell(tr, f.stanza_id); cell(tr, f.detail);
  });
}

async function act(name, body) {
  const r = await fetch("/console/api/actions/" + name, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
  const answer = await r.json();
  $("action-result").textContent = name + ": " + (r.ok ? JSON.stringify(answer) : answer.error);
  const snap = await fetch("/console/api/state", { headers: headers() });
  if (snap.ok) render(await snap.json());
}

// Server-sent events read from a fetch() body: "event: snapshot" + "data: {...}" blocks.
async function live() {
  if (stream) stream.abort();
  stream = new AbortController();
  setStatus("connecting", "connecting");
  let r;
  try {
    r = await fetch("/console/events", { headers: headers(), signal: stream.signal });
  } catch (e) {
    setStatus("error", "cannot reach the gateway");
    return retry();
  }
  if (r.status === 401) {
    setStatus("unauthorized", "token refused");
    $("login").hidden = false;
    return;
  }
  if (!r.ok) {
    setStatus("error", "live stream refused: " + r.status);
    return retry();
  }
  $("login").hidden = true;
  $("forget").hidden = !token;
  $("console").hidden = false;
  setStatus("live", "live");
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) render(JSON.parse(data));
      }
    }
  } catch (e) {
    if (stream.signal.aborted) return;
  }
  setStatus("error", "live stream ended");
  retry();
}

function retry() {
  setTimeout(live, 3000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(KEY, token);
    live();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    token = "";
    if (stream) stream.abort();
    location.reload();
  });
  for (const id of ["f-direction", "f-fate", "f-q"]) $(id).addEventListener("input", () => loadFates());
  $("filter").addEventListener("submit", (ev) => ev.preventDefault());
  for (const kind of ["sip", "xmpp"]) {
    $("trace-" + kind).addEventListener("click", (ev) => {
      act("trace", { [kind]: ev.target.dataset.on !== "true" });
    });
  }
  $("drain").addEventListener("click", () => {
    if (confirm("Drain the gateway and stop it?")) act("drain", { confirm: true });
  });
  live(); // works at once without a token on a loopback gateway that has none
});
