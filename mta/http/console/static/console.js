// The operator console: thin views over /console/api/*. Data is only ever put in the page as text
// (textContent, never innerHTML), so nothing an app or a remote server wrote can run here.

const REFRESH_MS = 5000;
const SECTIONS = ["warmup", "decisions", "queue", "deliverability", "suppressions"];
let session = null;          // {operator, csrf}
let timer = null;

// ---------------------------------------------------------------- helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

function say(text, error = false) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

async function api(path, options = {}) {
  const headers = {"Accept": "application/json", ...(options.headers || {})};
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (session && options.method && options.method !== "GET") headers["X-CSRF-Token"] = session.csrf;
  const reply = await fetch(path, {credentials: "same-origin", ...options, headers,
                                   body: options.body === undefined ? undefined : JSON.stringify(options.body)});
  if (reply.status === 401) {
    showLogin();
    throw new Error("not logged in");
  }
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) throw new Error(data.error ? data.error.message : `HTTP ${reply.status}`);
  return data;
}

function when(t) {
  if (!t) return "";
  if (t >= 1e11) return "until resumed";
  return new Date(t * 1000).toLocaleString();
}

function age(seconds) {
  if (seconds == null) return "";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function fill(tbody, rows, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", {colspan: "9"}, empty))]));
}

// ---------------------------------------------------------------- navigation
const LOGIN_ERRORS = {"failed": "That key was not accepted.",
                      "not-operator": "That is a tenant key: the console needs an operator key."};

function showLogin() {
  session = null;
  document.getElementById("login").hidden = false;
  for (const id of SECTIONS) document.getElementById(id).hidden = true;
  document.querySelector("header nav").hidden = true;
  document.querySelector(".who").hidden = true;
  if (timer) clearInterval(timer);
  timer = null;
  const failed = LOGIN_ERRORS[new URLSearchParams(location.search).get("login")];
  say(failed || "Log in with an operator API key.", Boolean(failed));
  document.getElementById("key").focus();
}

function current() {
  const name = location.hash.slice(1);
  return SECTIONS.includes(name) ? name : "warmup";
}

function show() {
  const name = current();
  for (const id of SECTIONS) {
    document.getElementById(id).hidden = id !== name;
    document.getElementById(`tab-${id}`).setAttribute("aria-selected", String(id === name));
  }
  refresh();
}

async function refresh() {
  if (!session) return;
  try {
    await VIEWS[current()]();
    say(`Updated ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    if (session) say(err.message, true);
  }
}

// ---------------------------------------------------------------- warm-up
function stateCell(p, now) {
  let text = "warming", cls = "state-ok";
  if (p.operator_paused) { text = "paused by operator"; cls = "state-paused"; }
  else if (p.paused_until && p.paused_until > now) {
    text = `paused (${p.pause_rule || "rule"}) until ${when(p.paused_until)}`; cls = "state-paused";
  } else if (p.backoff_until && p.backoff_until > now) {
    text = `throttled until ${when(p.backoff_until)}`; cls = "state-throttled";
  } else if (p.hold_until && p.hold_until > now) { text = `held until ${when(p.hold_until)}`; cls = "state-throttled"; }
  return el("td", {class: cls}, text);
}

function selectorOf(p) {
  const field = {ip: "source", domain: "domain", mailbox: "mailbox", tenant: "tenant", campaign: "campaign",
                 isp: "isp"}[p.kind];
  const sel = {};
  if (field) sel[field] = p.name;
  if (p.kind !== "isp" && p.isp && p.isp !== "*") sel.isp = p.isp;
  return sel;
}

function pairActions(p, now) {
  const sel = selectorOf(p);
  const label = `${p.kind} ${p.name} at ${p.isp}`;
  const paused = p.operator_paused || (p.paused_until && p.paused_until > now);
  const buttons = [];
  if (paused) buttons.push(el("button", {type: "button", onclick: () => act("resume", sel, `Resume ${label}?`)},
                              "Resume"));
  else buttons.push(el("button", {type: "button", class: "danger",
                                  onclick: () => act("pause", sel, `Pause ${label}?`, ["duration"])}, "Pause"));
  if (["ip", "domain", "mailbox"].includes(p.kind)) {
    buttons.push(el("button", {type: "button", onclick: () => act("set_day", sel, `Set the warm-up day of ${label}`,
                                                                 ["day"])}, "Set day"));
  }
  return el("td", {}, ...buttons);
}

async function viewWarmup() {
  const data = await api("api/warmup");
  const now = data.time || Date.now() / 1000;
  const summary = document.getElementById("warmup-summary");
  if (!data.policyd.connected) {
    summary.textContent = `policyd is not reachable at ${data.policyd.address || "(none configured)"}: ` +
      (data.policyd.error || "static limits apply");
  } else {
    summary.textContent = `policyd at ${data.policyd.address}: ${data.pairs.length} pairs` +
      (data.shared ? "; limits shared by the cluster (Redis): counts are cluster-wide" : "") +
      (data.in_window ? "; in the sending window" : "; outside the sending window");
  }
  const kind = document.getElementById("warmup-kind").value;
  const rows = (data.pairs || []).filter(p => !kind || p.kind === kind).map(p => el("tr", {},
    el("td", {}, p.kind), el("td", {}, p.name), el("td", {}, p.isp), el("td", {class: "num"}, p.day),
    el("td", {class: "num"}, Math.round(p.limit).toLocaleString()),
    el("td", {class: "num"}, Math.round(p.used_today).toLocaleString()),
    el("td", {class: "num"}, Number(p.factor).toFixed(2)), stateCell(p, now), pairActions(p, now)));
  fill(document.querySelector("#warmup-table tbody"), rows, "No pairs yet: send some mail.");
  drawCharts(data);
}

function drawCharts(data) {
  const box = document.getElementById("warmup-charts");
  const figures = Object.entries(data.daily || {}).map(([source, days]) => chart(source, days));
  box.replaceChildren(...(figures.length ? figures : [el("p", {class: "hint"}, "No deliveries recorded yet.")]));
}

function chart(source, days) {
  const W = 300, H = 120, pad = 22;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const last = days.length ? days[days.length - 1] : null;
  svg.setAttribute("aria-label", `${source}: ${days.length} days; last day ${last ? last.delivered : 0} delivered`);
  const n = Math.max(days.length, 1);
  const expected = days.map(d => d.schedule || 0);      // the schedules' volume that day (server-side)
  const planned = days.some(d => d.schedule != null);
  const top = Math.max(1, ...days.map(d => d.delivered), ...expected);
  const bw = (W - pad) / n;
  days.forEach((d, i) => {
    const h = (H - pad) * d.delivered / top;
    const r = document.createElementNS(ns, "rect");
    Object.entries({x: pad + i * bw + 1, y: H - pad - h, width: Math.max(1, bw - 2), height: h, class: "actual"})
      .forEach(([k, v]) => r.setAttribute(k, v));
    const tip = document.createElementNS(ns, "title");
    tip.textContent = `${d.date}: ${d.delivered} delivered` + (expected[i] ? `, schedule ${expected[i]}` : "");
    r.append(tip);
    svg.append(r);
  });
  if (planned) {
    days.forEach((d, i) => {
      const y = H - pad - (H - pad) * expected[i] / top;
      const mark = document.createElementNS(ns, "line");
      Object.entries({x1: pad + i * bw, x2: pad + (i + 1) * bw, y1: y, y2: y, class: "schedule"})
        .forEach(([k, v]) => mark.setAttribute(k, v));
      svg.append(mark);
    });
  }
  if (days.length) {
    for (const [i, anchor] of [[0, "start"], [days.length - 1, "end"]]) {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", anchor === "start" ? pad : W); t.setAttribute("y", H - 6);
      t.setAttribute("text-anchor", anchor);
      t.textContent = days[i].date;
      svg.append(t);
      if (days.length === 1) break;
    }
  }
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", 2); label.setAttribute("y", 10);
  label.textContent = top.toLocaleString();
  svg.append(label);
  const today = last ? `${last.delivered.toLocaleString()} delivered on ${last.date}` +
    (last.schedule != null ? `, schedule ${last.schedule.toLocaleString()}` : "") : "";
  return el("figure", {}, el("figcaption", {}, source), el("p", {class: "hint"}, today), svg,
            el("p", {class: "legend"}, "bars: delivered per day; dashes: the schedule's volume"));
}

// ---------------------------------------------------------------- decisions
async function viewDecisions() {
  const form = new FormData(document.getElementById("decisions-filter"));
  const q = new URLSearchParams([...form].filter(([, v]) => v));
  const data = await api(`api/decisions?${q}`);
  const target = key => {
    const [kind, name, isp] = String(key).split("|");
    return `${kind} ${name} at ${isp && isp !== "*" ? isp : "every ISP"}`;
  };
  const rows = data.actions.slice().reverse().map(a => el("tr", {},
    el("td", {}, when(a.at)), el("td", {}, target(a.key)), el("td", {}, a.rule), el("td", {}, a.action),
    el("td", {}, a.reason), el("td", {}, a.reply || ""), el("td", {}, a.expires ? when(a.expires) : "")));
  fill(document.querySelector("#decisions-table tbody"), rows, "No decisions recorded.");
}

// ---------------------------------------------------------------- queue
async function viewQueue() {
  const data = await api("api/queue");
  const rows = data.sites.map(s => el("tr", {},
    el("td", {}, s.site), el("td", {class: "num"}, s.queued), el("td", {class: "num"}, s.deferred),
    el("td", {class: "num"}, s.held), el("td", {}, age(s.oldest_age)),
    el("td", {}, (s.waiting || "") + (s.in_memory ? ` (${s.in_memory} in memory, ${s.connections} connections)` : "")),
    el("td", {}, (s.last_replies || []).join(" | ")),
    el("td", {},
       el("button", {type: "button", onclick: () => act("flush", {site: s.site}, `Retry everything for ${s.site} now?`)},
          "Flush"),
       el("button", {type: "button", class: "danger",
                     onclick: () => act("hold", {site: s.site}, `Hold all mail for ${s.site}?`)}, "Hold"),
       el("button", {type: "button", onclick: () => act("release", {site: s.site}, `Release held mail for ${s.site}?`)},
          "Release"))));
  fill(document.querySelector("#queue-table tbody"), rows, "The queue is empty.");
}

// ---------------------------------------------------------------- deliverability
function spark(points) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const W = 160, H = 28;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  svg.setAttribute("aria-hidden", "true");
  const top = Math.max(1, ...points);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "currentColor");
  line.setAttribute("points", points.map((v, i) => `${i * W / Math.max(1, points.length - 1)},${H - H * v / top}`)
    .join(" "));
  svg.append(line);
  return svg;
}

async function viewDeliverability() {
  const by = document.getElementById("deliv-by").value;
  const hours = document.getElementById("deliv-hours").value;
  const data = await api(`api/deliverability?by=${by}&hours=${hours}`);
  const rows = Object.entries(data.series).map(([name, hoursList]) => {
    const sum = k => hoursList.reduce((t, h) => t + (h[k] || 0), 0);
    const delivered = sum("delivered"), deferred = sum("deferred"), bounced = sum("bounced"),
          complained = sum("complained");
    const share = delivered + bounced ? (100 * delivered / (delivered + bounced)).toFixed(1) + " %" : "";
    return el("tr", {}, el("td", {}, name), el("td", {class: "num"}, delivered), el("td", {class: "num"}, deferred),
              el("td", {class: "num"}, bounced), el("td", {class: "num"}, complained), el("td", {class: "num"}, share),
              el("td", {}, spark(hoursList.map(h => h.delivered || 0))));
  });
  fill(document.querySelector("#deliv-table tbody"), rows, "Nothing sent in this period.");
}

// ---------------------------------------------------------------- suppressions
async function viewSuppressions() {
  const q = document.getElementById("supp-q").value.trim();
  if (!q) {
    fill(document.querySelector("#supp-table tbody"), [], "Search for an address.");
    return;
  }
  const data = await api(`api/suppressions?q=${encodeURIComponent(q)}`);
  const rows = data.entries.map(e => el("tr", {},
    el("td", {}, e.address), el("td", {}, e.tenant || "(all)"), el("td", {}, e.reason), el("td", {}, when(e.created)),
    el("td", {}, e.expires ? when(e.expires) : "never"), el("td", {}, e.detail || ""),
    el("td", {}, el("button", {type: "button", onclick: () => act("lift", {address: e.address, tenant: e.tenant},
                                                                  `Lift the suppression of ${e.address}?`)}, "Lift"))));
  fill(document.querySelector("#supp-table tbody"), rows, `${q} is not suppressed.`);
}

// ---------------------------------------------------------------- actions
async function act(action, target, question, fields = []) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = question;
  const extra = document.getElementById("confirm-fields");
  extra.replaceChildren();
  if (fields.includes("duration")) {
    extra.append(el("label", {}, "For (e.g. 2h; empty: until resumed)", el("input", {id: "confirm-duration"})));
  }
  if (fields.includes("day")) {
    extra.append(el("label", {}, "Warm-up day", el("input", {id: "confirm-day", type: "number", min: "0",
                                                              required: "", value: "0"})));
  }
  document.getElementById("confirm-reason").value = "";
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise(resolve => dialog.addEventListener("close", resolve, {once: true}));
  if (dialog.returnValue !== "ok") return;
  const body = {action, ...target, reason: document.getElementById("confirm-reason").value};
  const duration = document.getElementById("confirm-duration");
  if (duration) body.duration = duration.value;
  const day = document.getElementById("confirm-day");
  if (day) body.day = Number(day.value);
  try {
    const done = await api("api/action", {method: "POST", body});
    say(done.message || `${action}: done`);
    await VIEWS[current()]();
  } catch (err) {
    say(`${action} failed: ${err.message}`, true);
  }
}

const VIEWS = {warmup: viewWarmup, decisions: viewDecisions, queue: viewQueue, deliverability: viewDeliverability,
               suppressions: viewSuppressions};

// ---------------------------------------------------------------- start
async function start() {
  try {
    session = await api("api/session");
  } catch {
    return;        // showLogin() has run
  }
  document.getElementById("login").hidden = true;
  document.querySelector("header nav").hidden = false;
  document.querySelector(".who").hidden = false;
  document.getElementById("operator").textContent = `operator: ${session.operator}`;
  document.getElementById("logout-csrf").value = session.csrf;
  window.addEventListener("hashchange", show);
  document.getElementById("decisions-filter").addEventListener("submit", e => { e.preventDefault(); refresh(); });
  document.getElementById("supp-search").addEventListener("submit", e => { e.preventDefault(); refresh(); });
  for (const id of ["warmup-kind", "deliv-by", "deliv-hours"]) {
    document.getElementById(id).addEventListener("change", refresh);
  }
  document.getElementById("flush-all").addEventListener("click", () => act("flush", {}, "Retry all queued mail now?"));
  show();
  timer = setInterval(() => { if (!document.getElementById("confirm").open) refresh(); }, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
