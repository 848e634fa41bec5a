// kelpie's dashboard: polls /dashboard.json at most once a second and
// renders it with textContent only (never innerHTML), so nothing a program
// writes can become markup. CPU and RSS samples are kept here, in memory,
// for the sparklines; the token only in sessionStorage.
"use strict";

const POLL_MS = 1000;
const SAMPLES = 300; // five minutes at one poll a second
const samples = new Map(); // program -> {cpu: [], rss: [], last: {time, cpu}}
let selected = decodeURIComponent(location.hash.replace(/^#program=/, "")) || null;
let openExit = null;
let token = sessionStorage.getItem("kelpie-token") || "";

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return Math.floor(seconds) + "s";
  if (seconds < 3600) return Math.floor(seconds / 60) + "m" + (Math.floor(seconds) % 60) + "s";
  if (seconds < 86400) return Math.floor(seconds / 3600) + "h" + Math.floor((seconds % 3600) / 60) + "m";
  return Math.floor(seconds / 86400) + "d" + Math.floor((seconds % 86400) / 3600) + "h";
}

function bytes(n) {
  if (!n) return "0";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 100 20");
  svg.setAttribute("preserveAspectRatio", "none");
  if (values.length > 1) {
    const max = Math.max(...values) || 1;
    const step = 100 / (SAMPLES - 1);
    const offset = 100 - (values.length - 1) * step;
    const points = values.map((v, i) => (offset + i * step).toFixed(1) + "," + (19 - (v / max) * 18).toFixed(1));
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
  }
  return svg;
}

function record(data) {
  const seen = new Set();
  for (const p of data.programs) {
    seen.add(p.name);
    let s = samples.get(p.name);
    if (!s) { s = { cpu: [], rss: [], last: null }; samples.set(p.name, s); }
    if (s.last && data.time > s.last.time) {
      const rate = Math.max(0, (p.cpu_seconds - s.last.cpu) / (data.time - s.last.time));
      s.cpu.push(rate * 100);
    }
    s.rss.push(p.rss_bytes);
    s.last = { time: data.time, cpu: p.cpu_seconds };
    if (s.cpu.length > SAMPLES) s.cpu.shift();
    if (s.rss.length > SAMPLES) s.rss.shift();
  }
  for (const name of samples.keys()) if (!seen.has(name)) samples.delete(name);
}

function stateCell(state) {
  return el("td", { class: "state state-" + state }, state);
}

function renderRows(data) {
  const rows = [];
  for (const p of data.programs) {
    const s = samples.get(p.name) || { cpu: [], rss: [] };
    const cpu = s.cpu.length ? s.cpu[s.cpu.length - 1].toFixed(1) + "%" : "–";
    const single = p.instances.length === 1 ? p.instances[0] : null;
    const row = el("tr", { class: "program" + (p.name === selected ? " selected" : ""), "data-program": p.name },
      el("td", {}, el("strong", {}, p.name)),
      stateCell(p.state),
      el("td", {}, p.ready ? "yes" : "no"),
      el("td", { class: "num" }, single && single.pid ? single.pid : ""),
      el("td", { class: "num" }, single ? duration(single.uptime_seconds) : ""),
      el("td", { class: "num" }, p.restarts),
      el("td", { class: "num" }, el("span", { class: "spark" }, sparkline(s.cpu), cpu)),
      el("td", { class: "num" }, el("span", { class: "spark" }, sparkline(s.rss), bytes(p.rss_bytes))),
      el("td", { class: "num exits", "data-exits": String(p.exit_count) }, p.exit_count));
    row.addEventListener("click", () => select(p.name));
    rows.push(row);
    if (p.instances.length > 1) {
      for (const i of p.instances) {
        rows.push(el("tr", { class: "instance", "data-instance": i.name },
          el("td", {}, i.name), stateCell(i.state), el("td", {}, i.ready ? "yes" : "no"),
          el("td", { class: "num" }, i.pid || ""), el("td", { class: "num" }, duration(i.uptime_seconds)),
          el("td", { class: "num" }, i.restarts), el("td"), el("td"), el("td")));
      }
    }
  }
  $("rows").replaceChildren(...rows);
}

function renderDetail(data) {
  const program = data.programs.find((p) => p.name === selected);
  if (!program) { $("detail").hidden = true; return; }
  $("detail").hidden = false;
  $("detail-name").textContent = program.name;
  $("verdict").textContent = program.verdict;
  $("actions").hidden = !data.actions;
  const detail = data.selected && data.selected.name === selected ? data.selected : null;
  // Until the selected program's own reply comes (select() polls at once),
  // its newest exit is all there is.
  const exits = detail ? detail.exits : (program.last_exit ? [program.last_exit] : []);
  const count = detail ? detail.exits.length : program.exit_count;
  $("history-count").textContent = "(" + count + ")";
  $("history-count").setAttribute("data-count", String(count));
  $("history").replaceChildren(...exits.map((e) => {
    const key = e.time + "/" + e.pid;
    const item = el("li", { class: "exit", "data-pid": String(e.pid) },
      el("span", { class: "when" }, e.time.replace("T", " ").replace("Z", "") + " "),
      "pid " + e.pid + " " + e.text + " after " + (e.ran_seconds < 1 ? Math.round(e.ran_seconds * 1000) + "ms" : e.ran_seconds.toFixed(1) + "s") + (e.oom ? " (OOM killer)" : "") + " → " + e.decision);
    if (openExit === key && e.output) {
      item.append(el("pre", {}, e.output.map((l) => l.line).join("\n") || "(no output)"));
    }
    item.addEventListener("click", () => { openExit = openExit === key ? null : key; renderDetail(data); });
    return item;
  }));
  const log = detail ? detail.log : [];
  $("log").replaceChildren(...log.map((l) => el("span", { class: l.stream }, "[" + l.instance + "] " + l.line + "\n")));
}

let last = null;
function render(data) {
  last = data;
  const failed = data.programs.filter((p) => p.state === "failed").length;
  $("summary").textContent = data.programs.length + " programs, " + failed + " failed · up " + duration(data.uptime_seconds) + " · kelpie " + data.version;
  $("auth").hidden = !data.actions;
  renderRows(data);
  renderDetail(data);
}

function select(name) {
  selected = name;
  openExit = null;
  history.replaceState(null, "", "#program=" + encodeURIComponent(name));
  if (last) render(last);
  poll();
}

let timer = null;
let inFlight = false;
async function poll() {
  clearTimeout(timer);
  if (inFlight) return;
  inFlight = true;
  const started = Date.now();
  try {
    const query = selected ? "?program=" + encodeURIComponent(selected) : "";
    const response = await fetch("/dashboard.json" + query, { cache: "no-store", credentials: "omit" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const data = await response.json();
    record(data);
    render(data);
    $("conn").textContent = "";
    $("conn").className = "conn";
  } catch (err) {
    $("conn").textContent = "disconnected (" + err.message + ")";
    $("conn").className = "conn down";
  } finally {
    inFlight = false;
    // Never more than one poll a second, and none while the tab is hidden.
    if (!document.hidden) timer = setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
  }
}

async function act(button) {
  if (!selected) return;
  const body = {};
  if (button.dataset.rolling) body.rolling = true;
  if (button.dataset.verb === "signal") body.signal = $("signal").value;
  $("action-result").textContent = button.textContent + "…";
  try {
    const response = await fetch("/api/programs/" + encodeURIComponent(selected) + "/" + button.dataset.verb, {
      method: "POST",
      credentials: "omit",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const reply = await response.json().catch(() => ({}));
    const text = response.ok
      ? (reply.results || []).map((r) => r.program + ": " + r.message).join("; ")
      : reply.error || "HTTP " + response.status;
    $("action-result").textContent = text;
  } catch (err) {
    $("action-result").textContent = err.message;
  }
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = token;
  $("token").addEventListener("input", (e) => {
    token = e.target.value.trim();
    sessionStorage.setItem("kelpie-token", token);
  });
  $("forget").addEventListener("click", () => {
    token = "";
    $("token").value = "";
    sessionStorage.removeItem("kelpie-token");
  });
  for (const button of document.querySelectorAll("#actions button")) {
    button.addEventListener("click", () => act(button));
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  poll();
});
