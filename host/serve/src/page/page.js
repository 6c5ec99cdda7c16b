// The status page: reads /status.json every 3 s and draws it; the replay
// button posts to the admin API with the token the operator types once, as
// do the mapping section's diff and promote buttons.
"use strict";

const DAY = 24 * 3600;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function ago(now, t) {
  if (!t) return "—";
  const s = Math.max(0, now - t);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function secs(s) {
  if (s === null || s === undefined) return "—";
  if (s < 90) return `${s.toFixed(1)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// Rows sent per cycle (bars) and freshness (line) over the last day.
function spark(now, history) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 140 28");
  const x = (t) => 140 * (1 - Math.min(DAY, Math.max(0, now - t)) / DAY);
  const maxRows = Math.max(1, ...history.rows.map((r) => r[1]));
  for (const [t, n] of history.rows) {
    const r = document.createElementNS(ns, "rect");
    const h = Math.max(1, 26 * n / maxRows);
    r.setAttribute("class", "rows");
    r.setAttribute("x", x(t) - 1); r.setAttribute("y", 28 - h);
    r.setAttribute("width", 2); r.setAttribute("height", h);
    svg.append(r);
  }
  if (history.freshness.length > 1) {
    const maxF = Math.max(1, ...history.freshness.map((f) => f[1]));
    const pts = history.freshness.map(([t, f]) => `${x(t).toFixed(1)},${(27 - 25 * f / maxF).toFixed(1)}`);
    const p = document.createElementNS(ns, "polyline");
    p.setAttribute("class", "fresh");
    p.setAttribute("points", pts.join(" "));
    svg.append(p);
  }
  return svg;
}

function token() {
  let t = sessionStorage.getItem("mlc-admin-token");
  if (!t) {
    t = window.prompt("Admin token (ML_CONNECTOR_ADMIN_TOKEN):");
    if (t) sessionStorage.setItem("mlc-admin-token", t);
  }
  return t;
}

// What each pipeline's replay button last did, kept across redraws.
const replays = {};

function showReplay(key, button) {
  const r = replays[key];
  if (!r) return;
  button.textContent = r.text;
  button.disabled = r.busy;
}

async function replay(tenant, pipeline, button) {
  const t = token();
  if (!t) return;
  const key = `${tenant}/${pipeline}`;
  replays[key] = { text: "replaying…", busy: true };
  showReplay(key, button);
  try {
    const r = await fetch(`/api/v1/tenants/${encodeURIComponent(tenant)}/pipelines/${encodeURIComponent(pipeline)}/replay`, {
      method: "POST",
      headers: { "Authorization": `Bearer ${t}`, "Content-Type": "application/json" },
      body: JSON.stringify({ failed: true }),
    });
    const body = await r.json().catch(() => ({}));
    if (r.status === 401) sessionStorage.removeItem("mlc-admin-token");
    replays[key] = {
      text: r.ok ? `retrying ${body.batch}` : `refused: ${body.error ? body.error.message : r.status}`,
      busy: r.ok,
    };
    document.body.dataset.lastReplay = r.ok ? `ok ${body.batch}` : `refused ${r.status}`;
  } catch (e) {
    replays[key] = { text: `failed: ${e}`, busy: false };
    document.body.dataset.lastReplay = `failed ${e}`;
  }
  showReplay(key, button);
}

// The mapping section: the pipelines to choose from follow the status
// document; a promote is offered for exactly the text and pipeline diffed.
let diffed = null;

function choosePipelines(doc) {
  const select = document.getElementById("candidate-pipeline");
  const want = doc.tenants.flatMap((t) => t.pipelines.map((p) => `${t.tenant}/${p.pipeline}`));
  const have = [...select.options].map((o) => o.value);
  if (want.join("\n") === have.join("\n")) return;
  const chosen = select.value;
  select.replaceChildren(...want.map((k) => el("option", { value: k }, k)));
  if (want.includes(chosen)) select.value = chosen;
}

function mappingUrl(target, action) {
  const [tenant, pipeline] = target.split("/");
  return `/api/v1/tenants/${encodeURIComponent(tenant)}/pipelines/${encodeURIComponent(pipeline)}/mapping/${action}`;
}

function showDiff(d) {
  const out = [];
  const s = d.schema;
  out.push(el("p", {}, `${d.tenant}/${d.pipeline}: ${d.rows.records} stored records mapped with the version in use (${d.current_version.slice(0, 12)}) and the candidate (${d.candidate_version.slice(0, 12)}).`));
  if (s.changed) {
    const items = [
      ...s.renamed.map((r) => `renamed ${r.from} → ${r.to}`),
      ...s.added.map((c) => `added ${c.name} (${c.type})`),
      ...s.removed.map((c) => `removed ${c.name} (${c.type})`),
      ...s.retyped.map((r) => `retyped ${r.after.name}`),
      ...(s.reordered ? ["columns reordered"] : []),
    ];
    out.push(el("p", { class: "changed" }, `Schema changes (a promote re-exports the data source): ${items.join("; ")}`));
  } else {
    out.push(el("p", {}, "Schema unchanged."));
  }
  const r = d.rows;
  out.push(el("p", { id: "diff-rows" }, `Rows: ${r.rows_before} before, ${r.rows_after} after — ${r.rows_changed} would change, ${r.rows_unchanged} unchanged, ${r.rows_added} added, ${r.rows_removed} removed.`));
  const by = Object.entries(r.changed_by_column);
  if (by.length) out.push(el("p", {}, `Changed by column: ${by.map(([c, n]) => `${c} ${n}`).join(", ")}`));
  if (r.sample.length) {
    const rows = r.sample.flatMap((c) => c.cells.map((cell) =>
      el("tr", {}, el("td", {}, c.key), el("td", {}, cell.column),
        el("td", {}, JSON.stringify(cell.before)), el("td", {}, JSON.stringify(cell.after)))));
    out.push(el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "record"), el("th", {}, "column"),
      el("th", {}, "before"), el("th", {}, "after"))), el("tbody", {}, ...rows)));
  }
  out.push(el("p", { id: "diff-rejects" }, `Rejects: ${r.new_rejects} new, ${r.no_longer_rejected} no longer rejected, ${r.still_rejected} by both.`));
  if (r.new_reject_sample.length) {
    out.push(el("ul", {}, ...r.new_reject_sample.map((x) => el("li", { class: "error" }, `${x.key}: ${x.reason}`))));
  }
  out.push(el("p", { class: "muted" }, `Time per record: ${d.timing.current_us_per_record.toFixed(1)} µs in use, ${d.timing.candidate_us_per_record.toFixed(1)} µs candidate.`));
  return out;
}

async function mappingAction(action) {
  const t = token();
  if (!t) return;
  const target = document.getElementById("candidate-pipeline").value;
  const text = document.getElementById("candidate").value;
  const result = document.getElementById("diff-result");
  const promote = document.getElementById("promote");
  result.dataset.state = "busy";
  result.replaceChildren(el("p", { class: "muted" }, `${action === "diff" ? "mapping" : "installing"}…`));
  try {
    const r = await fetch(mappingUrl(target, action), {
      method: "POST",
      headers: { "Authorization": `Bearer ${t}`, "Content-Type": "text/plain" },
      body: text,
    });
    const body = await r.json().catch(() => ({}));
    if (r.status === 401) sessionStorage.removeItem("mlc-admin-token");
    if (!r.ok) {
      result.dataset.state = "refused";
      result.replaceChildren(el("div", { class: "error" }, `refused (${r.status}): ${body.error ? body.error.message : ""}`));
      return;
    }
    if (action === "diff") {
      diffed = { target, text };
      result.replaceChildren(...showDiff(body));
      result.dataset.state = "diffed";
    } else {
      diffed = null;
      result.replaceChildren(el("p", {}, `Installed ${body.version.slice(0, 12)} for ${target}: it maps the next batch.${body.schema_changed ? " The schema changed: the next batch re-exports the data source." : ""}`));
      result.dataset.state = "promoted";
    }
  } catch (e) {
    result.dataset.state = "refused";
    result.replaceChildren(el("div", { class: "error" }, `failed: ${e}`));
  } finally {
    candidateChanged();
  }
}

function candidateChanged() {
  const target = document.getElementById("candidate-pipeline").value;
  const text = document.getElementById("candidate").value;
  document.getElementById("promote").disabled = !(diffed && diffed.text === text && diffed.target === target);
}

document.getElementById("diff").addEventListener("click", () => mappingAction("diff"));
document.getElementById("promote").addEventListener("click", () => mappingAction("promote"));
document.getElementById("candidate").addEventListener("input", candidateChanged);
document.getElementById("candidate-pipeline").addEventListener("change", candidateChanged);

function stateOf(p) {
  const s = p.store || {};
  if (s.paused) return ["paused", "paused"];
  if (s.failed_batch) return ["failed", "failed"];
  if (p.schedule && p.schedule.state === "running") return ["running", "running"];
  if (p.last_cycle && p.last_cycle.outcome === "ok") return ["ok", "ok"];
  return [p.schedule ? p.schedule.state : "—", ""];
}

function draw(doc) {
  const now = doc.now;
  const body = document.querySelector("#pipelines tbody");
  body.replaceChildren();
  const problems = [];
  let pipelines = 0;
  for (const t of doc.tenants) {
    if (t.status.state === "failed") problems.push(`tenant ${t.tenant}: ${t.status.error}`);
    for (const r of t.refused) problems.push(`${t.tenant}/${r.pipeline}: mapping refused (${r.file}): ${r.reason}`);
    for (const p of t.pipelines) {
      pipelines++;
      const s = p.store || {};
      const [label, cls] = stateOf(p);
      const last = p.last_cycle;
      const lastAt = last ? last.at : null;
      const okAt = p.last_success_at;
      const next = p.schedule && p.schedule.state === "scheduled" ? Math.max(0, p.schedule.next_run - now) : null;
      const rows = p.history.rows.reduce((a, r) => a + r[1], 0);
      const fresh = p.freshness ? `${secs(p.freshness.p50_secs)} / ${secs(p.freshness.p95_secs)}` : "—";
      const row = el("tr", { "data-pipeline": `${t.tenant}/${p.pipeline}` },
        el("td", {}, `${t.tenant} / ${p.pipeline}`),
        el("td", {}, s.datasource || "—"),
        el("td", {}, el("span", { class: `state ${cls}` }, label)),
        el("td", {}, ago(now, lastAt)),
        el("td", {}, next === null ? "—" : `in ${secs(next)}`),
        el("td", {}, okAt ? secs(now - okAt) : "—"),
        el("td", {}, fresh),
        el("td", {}, rows.toLocaleString()),
        el("td", {}, spark(now, p.history)),
        el("td", {}));
      const key = `${t.tenant}/${p.pipeline}`;
      if (s.failed_batch) {
        const b = el("button", { class: "replay" }, "replay");
        b.addEventListener("click", () => replay(t.tenant, p.pipeline, b));
        showReplay(key, b);
        row.lastChild.append(b);
      } else {
        delete replays[key];
      }
      body.append(row);
      if (s.failed_batch) {
        body.append(el("tr", { class: "failure" },
          el("td", { colspan: "10" },
            el("div", { class: "error" }, `batch ${s.failed_batch.batch} failed (${s.failed_batch.failures}×): ${s.failed_batch.error}`))));
      }
    }
  }
  for (const t of doc.tenants) {
    for (const p of t.pipelines) {
      const f = p.store && p.store.failed_batch;
      if (f) problems.push(`${t.tenant}/${p.pipeline}: batch ${f.batch} failed ${f.failures}× (details below)`);
    }
  }
  for (const r of doc.refused_plugins || []) problems.push(`plugin ${r.tenant}/${r.name} refused (${r.kind}): ${r.reason}`);
  const list = document.getElementById("problem-list");
  list.replaceChildren(...problems.map((p) => el("li", { class: "error" }, p)));
  document.getElementById("problems").hidden = problems.length === 0;
  document.getElementById("summary").textContent =
    `${doc.tenants.length} tenants · ${pipelines} pipelines · up ${secs(now - doc.started_at)}`;
  const hooks = Object.entries(doc.webhooks || {});
  document.getElementById("webhooks").textContent = hooks.length
    ? hooks.map(([k, v]) => `${k}: ${v}`).join(" · ") : "none received";
  choosePipelines(doc);
  document.body.dataset.loaded = "true";
}

async function refresh() {
  try {
    const r = await fetch("/status.json", { cache: "no-store" });
    if (r.ok) draw(await r.json());
  } catch (e) {
    document.getElementById("summary").textContent = `cannot reach the server: ${e}`;
  }
}

refresh();
setInterval(refresh, 3000);
