// Shared by every tab: DOM and API helpers, job events, forms generated from op schemas, and
// validation issues shown beside the control that set them.

export const $ = (sel, root = document) => root.querySelector(sel);
export const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};

let token = sessionStorage.getItem("strata-token") || "";
export const hasToken = () => Boolean(token);

export class ApiFailure extends Error {
  constructor(status, body) {
    super(typeof body === "object" && body ? body.detail || body.error : String(body));
    this.status = status;
    this.body = body;
  }
}

export async function api(path, options = {}, retried = false) {
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && !retried) {
    const given = prompt("This server needs an API token:");
    if (given) {
      token = given.trim();
      sessionStorage.setItem("strata-token", token);
      return api(path, options, true);
    }
  }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.blob();
  if (!response.ok) throw new ApiFailure(response.status, body);
  return body;
}

export const postJson = (path, data) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });

export function showError(err) {
  const banner = $("#banner");
  banner.textContent = err instanceof ApiFailure ? `${err.message}` : `Error: ${err.message || err}`;
  banner.hidden = false;
}
export function clearError() { $("#banner").hidden = true; }
export function setStatus(text) { $("#status").textContent = text; }

// Images need the token too, which <img src> cannot send: fetch them as blobs when one is set.
export async function assetImage(id, alt = "") {
  const img = el("img", { alt, loading: "lazy" });
  if (!token) {
    img.src = `/api/assets/${id}`;
    return img;
  }
  try {
    img.src = URL.createObjectURL(await api(`/api/assets/${id}`));
  } catch {
    img.alt = "(not an image)";
  }
  return img;
}

// A URL the page can use for an output file (a blob URL when requests need the token).
export const fileUrl = async (file) => (token ? URL.createObjectURL(await api(file.url)) : file.url);

// An output file as the right element: video and audio play in the page, images show.
export async function mediaElement(file) {
  const ext = file.name.split(".").pop().toLowerCase();
  const src = await fileUrl(file);
  if (ext === "mp4") return el("video", { src, controls: "", preload: "metadata" });
  if (ext === "wav") return el("audio", { src, controls: "" });
  if (["png", "jpg", "jpeg", "webp", "tif", "tiff"].includes(ext)) return el("img", { src, alt: file.name });
  return el("a", { href: src, download: file.name }, file.name);
}

export function wsUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token) url.searchParams.set("token", token);
  return url;
}

// Follow one job's events; resolves with the job_finished message.
export function followJob(jobId, onEvent = () => {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(`/api/jobs/${jobId}/events`));
    ws.onmessage = (msg) => {
      const event = JSON.parse(msg.data);
      if (event.error && !event.event) { reject(new ApiFailure(0, event)); return; }
      onEvent(event);
      if (event.event === "job_finished") resolve(event);
    };
    ws.onerror = () => reject(new Error("the event stream closed unexpectedly"));
  });
}

export const firstOutput = (nodeOutputs) => Object.values(nodeOutputs || {})[0];

export const blobToDataUrl = (blob) => new Promise((resolve) => {
  const reader = new FileReader();
  reader.onload = () => resolve(reader.result);
  reader.readAsDataURL(blob);
});

// ---------------------------------------------------------------- forms from op schemas
// A param form generated from an op's JSON Schema (the same declaration the engine validates
// against): numbers with their bounds, choices as selects, switches, text; anything structured
// (lists, nested settings) as JSON. values() returns the params to send. With ``node`` each
// control is tagged (data-node, data-param) so the server's issues can be shown beside it.
export function paramForm(schema, current, { node = null, omit = [] } = {}) {
  const fields = [];
  const rows = Object.entries(schema.properties || {}).filter(([name]) => !omit.includes(name)).map(([name, prop]) => {
    const variants = prop.anyOf || [prop];
    const main = variants.find((v) => v.type !== "null") || prop;
    const nullable = variants.some((v) => v.type === "null");
    const value = name in current ? current[name] : prop.default;
    let input, read;
    if (main.enum) {
      input = el("select", {}, ...(nullable ? [el("option", { value: "" }, "—")] : []),
        ...main.enum.map((o) => el("option", { value: o }, String(o))));
      input.value = value ?? "";
      read = () => (input.value === "" ? null : main.type === "integer" ? Number(input.value) : input.value);
    } else if (main.type === "integer" || main.type === "number") {
      input = el("input", { type: "number", min: main.minimum ?? main.exclusiveMinimum, max: main.maximum ?? main.exclusiveMaximum,
        step: main.type === "integer" ? 1 : "any" });
      input.value = value ?? "";
      read = () => (input.value === "" ? null : Number(input.value));
    } else if (main.type === "boolean") {
      input = el("input", { type: "checkbox" });
      input.checked = Boolean(value);
      read = () => input.checked;
    } else if (main.type === "string") {
      input = el("input", { type: "text" });
      input.value = value ?? "";
      read = () => (input.value === "" && nullable ? null : input.value);
    } else {
      input = el("textarea", { rows: 2 }, JSON.stringify(value ?? null));
      read = () => JSON.parse(input.value || "null");
    }
    input.name = name;
    if (node) Object.assign(input.dataset, { node, param: name });
    fields.push({ name, read, initial: value, given: name in current });
    return el("label", { title: prop.description || "" }, `${name}${prop.description ? ` — ${prop.description}` : ""}`, input);
  });
  const values = () => {
    const out = {};
    for (const f of fields) {
      const v = f.read();
      // send what the workflow already set, and whatever was changed from the default
      if (f.given || JSON.stringify(v) !== JSON.stringify(f.initial)) out[f.name] = v;
    }
    return out;
  };
  return { element: el("div", { class: "params" }, ...rows), values };
}

// ---------------------------------------------------------------- issues beside their controls
// The server names the node and param of each problem; list params add "(at 0.opacity)". The
// message goes after the most specific tagged control found under ``root`` (data-node and
// data-param, or a section tagged with data-node alone); returns the issues placed nowhere.
export function clearIssues(root) {
  root.querySelectorAll(".issue").forEach((n) => n.remove());
  root.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
}

export function showIssues(root, issues) {
  const unplaced = [];
  for (const issue of issues) {
    const at = /\(at ([\w.]+)\)$/.exec(issue.message || "")?.[1];
    const sel = (param) => `[data-node="${CSS.escape(issue.node ?? "")}"]${param ? `[data-param="${CSS.escape(param)}"]` : ":not([data-param])"}`;
    const target = (issue.param && at && root.querySelector(sel(`${issue.param}.${at}`)))
      || (issue.param && root.querySelector(sel(issue.param))) || root.querySelector(sel(null));
    if (!target) { unplaced.push(issue); continue; }
    const text = `${issue.node}${issue.param ? ` · ${issue.param}` : ""}: ${issue.message}`;
    if (target.matches("input, select, textarea")) {
      target.setAttribute("aria-invalid", "true");
      const note = el("span", { class: "issue", role: "alert" }, text);
      (target.closest("label") || target).after(note);
    } else {
      target.prepend(el("p", { class: "issue", role: "alert" }, text));
    }
  }
  return unplaced;
}

export const issueText = (issues) => issues.map((i) => [i.node, i.param].filter(Boolean).join(" · ") + `: ${i.message}`).join("\n");

// ---------------------------------------------------------------- run a built workflow
// Submit ``workflow`` and follow it: a progress bar over all its nodes (steps of the running
// node count as a fraction of it), a log line per event, node failures and validation issues
// beside their controls under ``root``. Resolves with job_finished; throws on refusal.
export async function runWorkflowJob(workflow, { root, bar, log, onEvent = () => {} }) {
  clearIssues(root);
  log.replaceChildren();
  const total = workflow.nodes.length;
  const done = new Set();
  bar.hidden = false;
  bar.value = 0;
  let job;
  try {
    job = await postJson("/api/jobs", workflow);
  } catch (err) {
    bar.hidden = true;
    const issues = err.body?.issues;
    if (!issues) throw err;
    const unplaced = showIssues(root, issues);
    throw new Error(`${issues.length} problem(s) in the workflow — ${issueText(issues)}${unplaced.length ? "" : " (marked beside the controls)"}`);
  }
  setStatus(`job ${job.id} queued`);
  const finished = await followJob(job.id, (e) => {
    if (e.event === "node_finished" || e.event === "node_cached") done.add(e.node);
    if (e.event === "node_failed") showIssues(root, [{ node: e.node, param: null, message: e.error }]);
    const partial = e.event === "node_progress" && e.total ? e.step / e.total : 0;
    bar.value = Math.min(1, (done.size + partial) / total);
    if (e.event !== "node_progress" || e.step === e.total || e.message) {
      const what = [e.event, e.node, e.step && `${e.step}/${e.total}`, e.message, e.error].filter(Boolean).join(" ");
      log.append(el("li", { class: e.event.includes("fail") ? "failed" : e.event === "job_finished" ? "done" : "" }, what));
      log.scrollTop = log.scrollHeight;
    }
    onEvent(e);
  });
  bar.hidden = true;
  setStatus(`job ${job.id} ${finished.status}`);
  return finished;
}

// A tab's run button (#<tab>-run): clear the last result, build the workflow, run it with
// progress in #<tab>-progress and events in #<tab>-log, then show() its outputs. Failures go
// to the banner, starting with ``failure``, and beside the controls they name.
export function runButton(tab, { build, show, failure }) {
  const button = $(`#${tab}-run`);
  button.addEventListener("click", async () => {
    clearError();
    button.disabled = true;
    $(`#${tab}-result`).replaceChildren();  // what shows next is this run's
    try {
      const workflow = await build();
      const done = await runWorkflowJob(workflow, { root: $(`#${tab}`), bar: $(`#${tab}-progress`), log: $(`#${tab}-log`) });
      if (done.status !== "succeeded") throw new Error(`${failure} (${done.status}): ${done.error || "see the log"}`);
      await show(done.result.outputs);
    } catch (err) {
      showError(err);
    } finally {
      button.disabled = false;
    }
  });
}

// The installed models an op can use (GET /api/ops/{op}/models) as the choices of ``select``
// (the user's choice kept) and a note in [data-models-of=<op>]: which, or that none is.
export async function opModels(op, what, select = null) {
  const { models } = await api(`/api/ops/${op}/models`);
  if (select) {
    const chosen = select.value;
    select.replaceChildren(...models.map((m) => el("option", { value: m.id, selected: m.default ? "" : null }, m.id)));
    if (models.some((m) => m.id === chosen)) select.value = chosen;
  }
  const note = $(`[data-models-of="${op}"]`);
  note.textContent = models.length ? `installed ${what}: ${models.map((m) => m.id).join(", ")}`
    : `no ${what} installed on this server — running it will fail with the server's message`;
}
