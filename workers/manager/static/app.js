// The Cluster Manager's web page: reads the JSON API under /api/cluster (members every
// second, the rest every two seconds) and sends the actions (take over, run on member,
// abort; disable, enable and delete a job) after a confirmation; an execution's output opens on demand; a job's
// History shows its recent executions. No framework, no build
// step, nothing from another origin. Data is put in the page with textContent only (never
// as HTML).
"use strict";

const API = "../api/cluster";
const TOKEN_KEY = "qwc.manager.token";
const MEMBERS_EVERY_MS = 1000;
const OTHERS_EVERY = 2; // the other reads: every 2nd round, so every 2 s
const TIMELINE_MAX = 80;
const JOBS_SHOWN_MAX = 300;
const ACTIVE_STATUSES = ["scheduled", "running"];
const JOB_HISTORY_MAX = 20; // a job's recent executions shown by its History

const data = {
  members: [], jobs: [], executions: [], takeovers: [], recoveries: [], membership: [],
  guard: null, failures: [],
};
let round = 0;
let timer = null;
let reading = false;
let again = false;
let loaded = false;

// ---- the API ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = "Bearer " + token();
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (error) {
    throw new ApiError(0, "the manager does not answer (" + error.message + ")", null);
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch (_) {
    answer = null;
  }
  if (!response.ok) {
    const message = (answer && answer.message) || response.statusText;
    throw new ApiError(response.status, message, answer);
  }
  return answer;
}

// Where a token comes from, said in the page when a call is refused.
const TOKEN_HELP =
  "Reading needs the read token (qwcontrol.manager.readToken, env QWC_MANAGER_READTOKEN) or " +
  "the admin token (qwcontrol.manager.token, env QWC_MANAGER_TOKEN); acting (take over, run, " +
  "abort) needs the admin token. `qwc cluster up` and `qwc demo` print this page's address " +
  "with a read token in it (open that address) and keep both tokens in " +
  "manager-tokens.properties in their data directory.";

// What a refused or failed call means, for the page.
function explain(what, error) {
  if (error.status === 401) {
    return `${what}: 401 Unauthorized: ${error.message}. Type the manager's token above.\n` +
      TOKEN_HELP;
  }
  if (error.status === 403) {
    return `${what}: 403 Forbidden: ${error.message}.\n${TOKEN_HELP}`;
  }
  if (!error.status) return `${what}: ${error.message}`;
  return `${what}: ${error.status}: ${error.message}`;
}

// A token handed over in the address (#token=…, as `qwc cluster up` prints it): kept for
// this tab and taken out of the address bar and the history. A fragment never reaches the
// server, so no access log holds it.
function tokenFromAddress() {
  const match = /^#token=([^&]+)/.exec(location.hash);
  if (!match) return false;
  let value = "";
  try {
    value = decodeURIComponent(match[1]);
  } catch (_) {
    value = "";
  }
  history.replaceState(null, "", location.pathname + location.search);
  if (!value) return false;
  sessionStorage.setItem(TOKEN_KEY, value);
  return true;
}

// ---- small helpers ----------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function shortId(id) {
  return id ? String(id).slice(0, 8) : "";
}

function memberName(uuid) {
  if (!uuid) return "every member";
  const m = data.members.find((row) => row.uuid === uuid);
  return m && m.name ? m.name : shortId(uuid);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 10) return seconds.toFixed(1) + " s";
  if (seconds < 120) return Math.round(seconds) + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  return Math.round(seconds / 3600) + " h";
}

function clock(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  const d = new Date(ms);
  const pad = (n, w) => String(n).padStart(w || 2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function destinations(map) {
  return Object.entries(map || {})
    .map(([uuid, n]) => `${memberName(uuid)} (${n})`)
    .join(", ");
}

// Keep a table body's rows in the order of ``items``, one per key: rows are updated in place
// (a button being clicked is not replaced under the pointer), new ones made, gone ones removed.
function syncRows(tbody, items, key, make, update) {
  const existing = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
  let previous = null;
  for (const item of items) {
    const k = key(item);
    let row = existing.get(k);
    if (row) existing.delete(k);
    else {
      row = make(item);
      row.dataset.key = k;
    }
    update(row, item);
    const next = previous ? previous.nextSibling : tbody.firstChild;
    if (row !== next) tbody.insertBefore(row, next);
    previous = row;
  }
  for (const row of existing.values()) row.remove();
}

// ---- messages on the page ---------------------------------------------------------------

function showProblem(text) {
  const box = document.getElementById("problem");
  box.textContent = text;
  box.hidden = !text;
}

function notice(text, ok) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.className = ok ? "ok" : "error";
  box.hidden = false;
}

// ---- the confirmation step --------------------------------------------------------------

// Ask before an action: resolves true on Confirm. ``extra`` (optional) goes under the text.
function confirmAction(title, text, extra, confirmLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-extra").replaceChildren(...(extra ? [extra] : []));
  document.getElementById("confirm-ok").textContent = confirmLabel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

// ---- the actions ------------------------------------------------------------------------

async function takeOver(member) {
  const targets = data.members.filter(
    (m) => m.state === "active" && !m.passive && m.uuid !== member.uuid,
  );
  const select = el("select", { id: "takeover-to" },
    el("option", { value: "", text: "spread over the active members" }),
    ...targets.map((m) => el("option", { value: m.uuid, text: `${m.name || shortId(m.uuid)}` })));
  const extra = el("label", { class: "extra" }, "To ", select);
  const ok = await confirmAction(
    `Take over the jobs of ${member.name || member.uuid}?`,
    `Moves its ${member.jobs_owned} job(s) in one transaction; each job's owner epoch goes up, ` +
      `so ${member.name || "this member"} can never fire them again.`,
    extra, "Take over");
  if (!ok) return;
  const body = { from: member.uuid };
  if (select.value) body.to = select.value;
  try {
    const answer = await call("POST", "/takeovers", body);
    const moved = answer.takeoverSchedule.jobs.successful;
    notice(`Took over ${moved.length} job(s) of ${member.name || member.uuid}.`, true);
  } catch (error) {
    const answer = error.body;
    if (error.status === 409 && answer && answer.success === false) {
      notice(`Take over refused (409): ${answer.message}`, false);
    } else notice(explain("Take over refused", error), false);
  }
  refreshNow();
}

async function runOn(job, memberUuid) {
  const where = memberUuid ? memberName(memberUuid) : "the member the policy picks";
  const ok = await confirmAction(
    `Run ${jobPath(job)} now?`,
    `Sends an execute command to ${where}; it runs within the member's processing interval.`,
    null, "Run");
  if (!ok) return;
  try {
    const issued = await call("POST", `/jobs/${encodeURIComponent(job.id)}/run`,
      memberUuid ? { on: memberUuid } : {});
    notice(`Execute command ${shortId(issued.command_id)} sent to ` +
      `${memberName(issued.target_uuid)}: execution ${issued.execution_id}.`, true);
  } catch (error) {
    notice(explain("Run refused", error), false);
  }
  refreshNow();
}

function jobPath(job) {
  return `${job.project}/${job.group ? job.group + "/" : ""}${job.name}`;
}

// Disable a job (its schedule and its execution: it is neither fired nor run), or enable
// both again: PATCH /jobs/{id}.
async function toggleJob(job) {
  const enable = !(job.schedule_enabled && job.execution_enabled);
  const ok = await confirmAction(
    `${enable ? "Enable" : "Disable"} ${jobPath(job)}?`,
    enable
      ? "Its schedule fires it again from its next time, and it may be run."
      : "It is fired no more and cannot be run (its schedule and its execution are disabled); " +
        "an execution running now finishes.",
    null, enable ? "Enable" : "Disable");
  if (!ok) return;
  try {
    const body = { schedule_enabled: enable, execution_enabled: enable };
    const done = await call("PATCH", `/jobs/${encodeURIComponent(job.id)}`, body);
    notice(`${jobPath(done)} ${enable ? "enabled" : "disabled"} (owner epoch ${done.owner_epoch}).`,
      true);
  } catch (error) {
    notice(explain(`${enable ? "Enable" : "Disable"} refused`, error), false);
  }
  refreshNow();
}

async function deleteJob(job) {
  const ok = await confirmAction(
    `Delete ${jobPath(job)}?`,
    "It is fired and run no more; its executions that have not started are aborted, running " +
      "ones finish; its executions stay listed until retention removes them.",
    null, "Delete");
  if (!ok) return;
  try {
    const done = await call("DELETE", `/jobs/${encodeURIComponent(job.id)}`);
    const running = done.running.length ? `; ${done.running.length} running execution(s) finish` : "";
    notice(`Deleted ${jobPath(done.job)}${running}.`, true);
  } catch (error) {
    notice(explain("Delete refused", error), false);
  }
  refreshNow();
}

async function abort(execution) {
  const ok = await confirmAction(
    `Abort execution ${shortId(execution.id)}?`,
    `Execution ${execution.id} of job ${jobLabel(execution.job_id)} on ` +
      `${memberName(execution.member_uuid)} (${execution.status}) is stopped.`,
    null, "Abort");
  if (!ok) return;
  try {
    const answer = await call("POST", `/executions/${encodeURIComponent(execution.id)}/abort`, {});
    notice(`Abort ${answer.outcome}: ${answer.detail}`, true);
  } catch (error) {
    const answer = error.body;
    if (error.status === 409 && answer && answer.outcome) {
      notice(`Abort: ${answer.outcome}: ${answer.detail}`, false);
    } else notice(explain("Abort refused", error), false);
  }
  refreshNow();
}

// An execution's output (GET /executions/{id}: up to output.maxBytes, head and tail), in a
// dialog. Read when asked: lists never carry outputs.
async function showOutput(execution) {
  let detail;
  try {
    detail = await call("GET", `/executions/${encodeURIComponent(execution.id)}`);
  } catch (error) {
    notice(explain("Reading the output refused", error), false);
    return;
  }
  document.getElementById("output-title").textContent =
    `Execution ${shortId(detail.id)} of ${jobLabel(detail.job_id)}`;
  document.getElementById("output-facts").textContent = executionFacts(detail);
  const text = document.getElementById("output-text");
  text.textContent = detail.output || "(no output)";
  text.classList.toggle("empty", !detail.output);
  const dialog = document.getElementById("output");
  if (!dialog.open) dialog.showModal();
}

// One line of what happened to an execution: status, exit code, why, where, when.
function executionFacts(e) {
  const parts = [e.status + (e.exit_code === null ? "" : ` (exit ${e.exit_code})`)];
  if (e.reason) parts.push(e.reason);
  parts.push(`on ${memberName(e.member_uuid)}`, `attempt ${e.attempt}`);
  if (e.started_ms) parts.push(`started ${clock(e.started_ms)} (${lateness(e)} late)`);
  if (e.ended_ms) parts.push(`ended ${clock(e.ended_ms)}`);
  return parts.join(" · ");
}

async function releaseGuard() {
  const ok = await confirmAction("Release the mass-failure guard?",
    "The takeovers it holds proceed at the workers' next check.", null, "Release");
  if (!ok) return;
  try {
    const done = await call("POST", "/guard/release");
    notice(`Guard released: ${done.held} held takeover(s) proceed.`, true);
  } catch (error) {
    notice(explain("Release refused", error), false);
  }
  refreshNow();
}

// ---- rendering --------------------------------------------------------------------------

// How late after its fire time an execution started ("" when it has not started).
function lateness(e) {
  return e.started_ms ? age(Math.max(0, e.started_ms - e.fire_ms) / 1000) : "";
}

function jobLabel(jobId) {
  const job = data.jobs.find((j) => j.id === jobId);
  return job ? jobPath(job) : shortId(jobId);
}

function renderMembers() {
  const members = data.members;
  const most = Math.max(1, ...members.map((m) => m.jobs_owned));
  const tbody = document.querySelector("#members tbody");
  syncRows(tbody, members, (m) => m.uuid, makeMemberRow, (row, m) => {
    row.className = "state-" + m.state;
    row.dataset.uuid = m.uuid;
    row.dataset.state = m.state;
    row.dataset.name = m.name;
    row.dataset.jobs = String(m.jobs_owned);
    const c = row.cells;
    c[0].querySelector(".label").textContent = m.state;
    c[1].firstChild.textContent = m.name || "(no name)";
    c[1].querySelector(".passive").hidden = !m.passive;
    c[2].textContent = shortId(m.uuid);
    c[2].title = m.uuid;
    c[3].textContent = age(m.age_s);
    c[3].title = m.last_seen || "never heard by this view";
    c[4].querySelector(".count").textContent = String(m.jobs_owned);
    c[4].querySelector(".bar").style.width = `${(100 * m.jobs_owned) / most}%`;
    c[5].textContent = m.executions_waiting
      ? `${m.executions_running} +${m.executions_waiting} waiting`
      : String(m.executions_running);
    c[6].textContent = m.tags.join(", ");
    c[7].querySelector(".takeover").disabled = m.jobs_owned === 0;
  });
  const count = (s) => members.filter((m) => m.state === s).length;
  const jobs = members.reduce((n, m) => n + m.jobs_owned, 0);
  document.getElementById("members-summary").textContent =
    `${members.length} · ${count("active")} active, ${count("inactive")} inactive, ` +
    `${count("dead")} dead · ${jobs} jobs`;
}

function makeMemberRow(m) {
  const row = el("tr", {},
    el("td", { class: "state" }, el("span", { class: "dot" }), el("span", { class: "label" })),
    el("td", { class: "name" }, document.createTextNode(""),
      el("span", { class: "badge passive", text: "passive" })),
    el("td", { class: "uuid mono" }),
    el("td", { class: "age num" }),
    el("td", { class: "jobs" },
      el("span", { class: "count" }), el("span", { class: "track" }, el("span", { class: "bar" }))),
    el("td", { class: "running num" }),
    el("td", { class: "tags" }),
    el("td", { class: "actions" },
      el("button", { type: "button", class: "takeover danger", text: "Take over",
        onclick: () => takeOver(data.members.find((x) => x.uuid === row.dataset.uuid)) }),
      el("button", { type: "button", class: "show-jobs", text: "Jobs",
        onclick: () => showJobsOf(row.dataset.uuid) })));
  return row;
}

function showJobsOf(uuid) {
  document.getElementById("jobs-owner").value = uuid;
  renderJobs();
  document.getElementById("jobs-section").scrollIntoView({ behavior: "smooth" });
}

function renderOwnerFilter() {
  const select = document.getElementById("jobs-owner");
  const wanted = [["", "every member"],
    ...data.members.map((m) => [m.uuid, `${m.name || shortId(m.uuid)} (${m.jobs_owned})`])];
  setOptions(select, wanted);
}

// Replace a select's options only when they changed (an open drop-down stays open).
function setOptions(select, wanted) {
  const have = [...select.options].map((o) => [o.value, o.textContent]);
  if (JSON.stringify(have) === JSON.stringify(wanted)) return;
  const chosen = select.value;
  select.replaceChildren(...wanted.map(([value, text]) => el("option", { value, text })));
  select.value = wanted.some(([v]) => v === chosen) ? chosen : "";
}

function renderJobs() {
  const owner = document.getElementById("jobs-owner").value;
  const jobs = data.jobs.filter((j) => !owner || j.owner_uuid === owner);
  const shown = jobs.slice(0, JOBS_SHOWN_MAX);
  const runnable = data.members.filter((m) => m.state === "active");
  document.getElementById("jobs-summary").textContent =
    jobs.length > shown.length ? `${shown.length} of ${jobs.length} shown` : `${jobs.length}`;
  const tbody = document.querySelector("#jobs tbody");
  syncRows(tbody, shown, (j) => j.id, makeJobRow, (row, j) => {
    row.dataset.id = j.id;
    row.dataset.owner = j.owner_uuid;
    const on = j.schedule_enabled && j.execution_enabled;
    row.dataset.enabled = String(on);
    const c = row.cells;
    c[0].querySelector(".path").textContent = jobPath(j);
    c[0].title = j.id;
    const off = !j.execution_enabled ? (j.schedule_enabled ? "execution off" : "disabled")
      : (j.schedule_enabled ? "" : "schedule off");
    c[0].querySelector(".badge").textContent = off;
    c[0].querySelector(".badge").hidden = !off;
    c[4].querySelector(".toggle").textContent = on ? "Disable" : "Enable";
    c[1].textContent = memberName(j.owner_uuid);
    const owner = data.members.find((m) => m.uuid === j.owner_uuid);
    c[1].className = "state-text state-" + (owner ? owner.state : "unknown");
    c[2].textContent = j.schedule || "—";
    c[3].textContent = j.next_fire_ms ? clock(j.next_fire_ms) : "—";
    const select = c[4].querySelector("select");
    setOptions(select, [["", "policy picks"],
      ...runnable.map((m) => [m.uuid, m.name || shortId(m.uuid)])]);
  });
}

function makeJobRow(j) {
  const select = el("select", { class: "run-on", "aria-label": "member to run on" });
  const current = () => data.jobs.find((x) => x.id === row.dataset.id) || j;
  const row = el("tr", {},
    el("td", { class: "job" }, el("span", { class: "path" }), el("span", { class: "badge" })),
    el("td"), el("td", { class: "mono" }), el("td", { class: "mono" }),
    el("td", { class: "actions" }, select,
      el("button", { type: "button", class: "run", text: "Run",
        onclick: () => runOn(current(), select.value) }),
      el("button", { type: "button", class: "history", text: "History",
        onclick: () => showHistoryOf(row.dataset.id) }),
      el("button", { type: "button", class: "toggle", text: "Disable",
        onclick: () => toggleJob(current()) }),
      el("button", { type: "button", class: "delete danger", text: "Delete",
        onclick: () => deleteJob(current()) })));
  return row;
}

// The executions list: every job's (the active ones, then the newest), or one job's recent
// executions (its History, or the Job filter above the list).
function executionsJob() {
  return document.getElementById("executions-job").value;
}

function renderExecutionsFilter() {
  setOptions(document.getElementById("executions-job"),
    [["", "every job"], ...data.jobs.map((j) => [j.id, jobPath(j)])]);
}

function showHistoryOf(jobId) {
  renderExecutionsFilter();
  document.getElementById("executions-job").value = jobId;
  data.executions = data.executions.filter((e) => e.job_id === jobId);
  renderExecutions();
  refreshNow();
  document.getElementById("executions-section").scrollIntoView({ behavior: "smooth" });
}

function renderExecutions() {
  const job = executionsJob();
  document.getElementById("executions-summary").textContent = job
    ? `${jobLabel(job)}: its ${JOB_HISTORY_MAX} newest, newest first`
    : "active, then the newest; newest first";
  const tbody = document.querySelector("#executions tbody");
  syncRows(tbody, data.executions, (e) => e.id, makeExecutionRow, (row, e) => {
    row.dataset.id = e.id;
    row.dataset.status = e.status;
    const c = row.cells;
    c[0].textContent = shortId(e.id);
    c[0].title = e.id;
    c[1].textContent = jobLabel(e.job_id);
    c[2].textContent = memberName(e.member_uuid);
    c[3].textContent = e.status + (e.attempt > 1 ? ` (attempt ${e.attempt})` : "");
    c[3].className = "status status-" + e.status;
    c[3].title = e.reason || "";
    c[4].textContent = clock(e.started_ms || e.fire_ms);
    c[5].querySelector(".abort").hidden = !ACTIVE_STATUSES.includes(e.status);
    c[6].textContent = lateness(e);
    c[6].title = "started − fire time";
  });
}

function makeExecutionRow(e) {
  const current = () => data.executions.find((x) => x.id === row.dataset.id) || e;
  const row = el("tr", {}, el("td", { class: "mono" }), el("td"), el("td"), el("td"),
    el("td", { class: "mono" }),
    el("td", { class: "actions" },
      el("button", { type: "button", class: "show-output", text: "Output",
        onclick: () => showOutput(current()) }),
      el("button", { type: "button", class: "abort danger", text: "Abort",
        onclick: () => abort(current()) })),
    el("td", { class: "late num" }));
  return row;
}

// Webhook deliveries given up (qwc notifications failed), newest first.
function renderFailures() {
  const tbody = document.querySelector("#failures tbody");
  syncRows(tbody, data.failures, (f) => f.id, makeFailureRow, (row, f) => {
    row.dataset.receiver = f.receiver;
    row.dataset.type = f.event_type;
    const c = row.cells;
    c[0].textContent = clock(f.failed_at_ms);
    c[1].textContent = f.receiver;
    c[2].textContent = f.event_type;
    c[3].textContent = f.event_id;
    c[4].textContent = String(f.attempts);
    c[5].textContent = f.error;
  });
  document.getElementById("failures-summary").textContent =
    data.failures.length ? `${data.failures.length} given up` : "none";
}

function makeFailureRow() {
  return el("tr", {}, el("td", { class: "mono" }), el("td"), el("td"), el("td", { class: "mono" }),
    el("td", { class: "num" }), el("td", { class: "error" }));
}

// The timeline: takeovers, recoveries and member state changes, newest first.
function timelineEvents() {
  const events = [];
  for (const c of data.membership) {
    const from = c.from_state || "new";
    events.push({ at: c.at_ms, kind: "member", cls: "to-" + c.to_state, key: "m" + c.id,
      member: c.uuid, text: `${c.name || shortId(c.uuid)}: ${from} → ${c.to_state}` });
  }
  for (const t of data.takeovers) {
    const who = memberName(t.dead_uuid);
    if (t.outcome !== "manual") {
      events.push({ at: t.proposed_ms, kind: "takeover", cls: "proposed", key: "tp" + t.proposal_id,
        member: t.dead_uuid,
        text: `takeover of ${who} proposed (policy ${t.policy}), due ${clock(t.due_ms)}` });
    }
    if (t.decided_ms !== null) {
      const what = t.outcome === "manual"
        ? `manual takeover of ${who}` : `takeover of ${who} ${t.outcome}`;
      const moved = t.jobs_moved
        ? `: ${t.jobs_moved} job(s) → ${destinations(t.destinations)}` : "";
      const detail = !t.jobs_moved && t.detail ? `: ${t.detail}` : "";
      events.push({ at: t.decided_ms, kind: "takeover", cls: "outcome-" + t.outcome,
        key: "td" + t.proposal_id, member: t.dead_uuid, text: what + moved + detail });
    }
  }
  for (const r of data.recoveries) {
    const who = memberName(r.dead_uuid);
    const at = Date.parse(r.decided_at || r.proposed_at);
    const what = r.outcome
      ? `recovery of ${who} ${r.outcome}: ${r.executions_marked} execution(s) marked ` +
        `incomplete, ${r.retried} retried`
      : `recovery of ${who} proposed (policy ${r.policy})`;
    events.push({ at, kind: "recovery", cls: "outcome-" + (r.outcome || "pending"),
      key: "r" + r.proposal_id + (r.outcome || ""), member: r.dead_uuid, text: what });
  }
  events.sort((a, b) => b.at - a.at);
  return events.slice(0, TIMELINE_MAX);
}

function renderTimeline() {
  const list = document.getElementById("timeline");
  const events = timelineEvents();
  const existing = new Map([...list.children].map((li) => [li.dataset.key, li]));
  const items = events.map((ev) => {
    const li = existing.get(ev.key) || el("li", {},
      el("time"), el("span", { class: "kind" }), el("span", { class: "text" }));
    li.dataset.key = ev.key;
    li.dataset.kind = ev.kind;
    li.dataset.member = ev.member || "";
    li.className = ev.kind + " " + ev.cls;
    li.children[0].textContent = clock(ev.at);
    li.children[1].textContent = ev.kind;
    li.children[2].textContent = ev.text;
    return li;
  });
  list.replaceChildren(...items);
  if (!items.length) list.append(el("li", { class: "empty", text: "nothing yet" }));
}

function renderGuard() {
  const box = document.getElementById("guard");
  const held = data.guard ? Object.entries(data.guard.held) : [];
  box.hidden = held.length === 0;
  if (!held.length) return;
  box.replaceChildren(
    el("strong", { text: `Mass-failure guard holds ${held.length} takeover(s). ` }),
    document.createTextNode(held.map(([, why]) => why).join("; ") + " "),
    el("button", { type: "button", class: "danger", text: "Release", onclick: releaseGuard }));
}

function render() {
  renderMembers();
  renderOwnerFilter();
  renderJobs();
  renderExecutionsFilter();
  renderExecutions();
  renderTimeline();
  renderGuard();
  renderFailures();
}

// ---- polling ----------------------------------------------------------------------------

async function read(path, into) {
  data[into] = await call("GET", path);
}

async function executionsRead() {
  const job = executionsJob();
  if (job) {
    const rows = await call("GET",
      `/executions?job=${encodeURIComponent(job)}&limit=${JOB_HISTORY_MAX}`);
    if (executionsJob() === job) data.executions = rows; // not another job's, chosen meanwhile
    return;
  }
  const active = await call("GET", "/executions?status=scheduled&status=running&limit=50");
  const recent = await call("GET", "/executions?limit=20");
  const ids = new Set(active.map((e) => e.id));
  if (!executionsJob()) data.executions = [...active, ...recent.filter((e) => !ids.has(e.id))];
}

async function refresh() {
  const reads = [read("/members", "members")];
  if (round % OTHERS_EVERY === 0) {
    reads.push(read("/jobs", "jobs"), executionsRead(), read("/takeovers?limit=100", "takeovers"),
      read("/recoveries?limit=50", "recoveries"), read("/membership?limit=100", "membership"),
      read("/guard", "guard"), read("/notifications/failed?limit=20", "failures"));
  }
  round += 1;
  const results = await Promise.allSettled(reads);
  const failed = results.find((r) => r.status === "rejected");
  const status = document.getElementById("status");
  if (failed) {
    showProblem(explain("Reading the cluster refused", failed.reason));
    status.textContent = loaded ? "not updated: see the message below" : "no data";
    status.className = "stale";
  } else {
    showProblem("");
    loaded = true;
    status.textContent = `updated ${clock(Date.now())}`;
    status.className = "fresh";
  }
  render();
}

// One chain of rounds: a round asked for while one runs (refreshNow) starts right after it.
async function loop() {
  clearTimeout(timer);
  if (reading) {
    again = true;
    return;
  }
  reading = true;
  try {
    await refresh();
  } finally {
    reading = false;
    timer = setTimeout(loop, again ? 0 : MEMBERS_EVERY_MS);
    again = false;
  }
}

function refreshNow() {
  round = 0; // the next round reads everything
  loop();
}

// ---- start ------------------------------------------------------------------------------

function start() {
  const handedOver = tokenFromAddress();
  const input = document.getElementById("token");
  input.value = token();
  if (handedOver) notice("Token from the address kept for this tab (sessionStorage).", true);
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
    else sessionStorage.removeItem(TOKEN_KEY);
    notice(input.value ? "Token kept for this tab (sessionStorage)."
      : "No token: calls go without one.", true);
    refreshNow();
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    input.value = "";
    notice("Token forgotten.", true);
    refreshNow();
  });
  document.getElementById("jobs-owner").addEventListener("change", renderJobs);
  document.getElementById("executions-job").addEventListener("change", () => {
    data.executions = [];
    renderExecutions();
    refreshNow();
  });
  loop();
}

start();
