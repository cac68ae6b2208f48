// strata studio: one page over the HTTP API (no build step, no network beyond this server).
// Sections: generate · workflow · history · provenance · queue · start-up; compose.js and
// video.js build workflows from their tabs; common.js holds the shared helpers.

import {
  $, api, assetImage, blobToDataUrl, clearError, el, fileUrl, firstOutput, followJob, mediaElement,
  paramForm, postJson, setStatus, showError, wsUrl,
} from "./common.js";
import { setupCompose } from "./compose.js";
import { setPicked } from "./library.js";
import { setupVideo } from "./video.js";

// ---------------------------------------------------------------- generate
async function generate(event) {
  event.preventDefault();
  clearError();
  const form = new FormData(event.target);
  const request = { prompt: form.get("prompt"), negative_prompt: form.get("negative_prompt") };
  for (const name of ["count", "seed", "steps"]) request[name] = parseInt(form.get(name), 10);
  request.guidance = parseFloat(form.get("guidance"));
  request.sampler = form.get("sampler");
  const button = $("#gen-submit"), bar = $("#gen-progress");
  button.disabled = true;
  bar.hidden = false;
  bar.value = 0;
  $("#gen-grid").replaceChildren();
  $("#gen-picked").hidden = true;
  try {
    const job = await postJson("/api/generate", request);
    setStatus(`job ${job.id} queued`);
    const done = await followJob(job.id, (e) => {
      if (e.event === "job_started") setStatus(`job ${job.id} running`);
      if (e.event === "node_progress") {
        bar.value = e.step / e.total;
        if (e.preview) $("#gen-preview").replaceChildren(el("img", { src: e.preview, alt: "preview" }));
      }
    });
    setStatus(`job ${job.id} ${done.status}`);
    if (done.status !== "succeeded") throw new Error(done.error || done.status);
    const images = [].concat(firstOutput(done.result.node_outputs.generate) || []);
    const files = done.result.outputs["image.png"] || [];
    $("#gen-preview").replaceChildren();
    images.forEach(async (assetId, i) => {
      const figure = el("figure", { tabindex: 0 }, await assetImage(assetId, `image ${i + 1}`),
        el("figcaption", {}, `seed ${request.seed + i}`));
      figure.addEventListener("click", () => pick(figure, assetId, files[i], request.seed + i));
      $("#gen-grid").append(figure);
    });
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
    bar.hidden = true;
  }
}

// ---------------------------------------------------------------- paint a mask → inpaint
const paint = { canvas: null, image: null, prompt: "" };

async function openInpaint(assetId, seed, prompt) {
  const blob = await api(`/api/assets/${assetId}`);
  const image = el("img", { alt: "image to edit" });
  image.src = URL.createObjectURL(blob);
  await image.decode();
  const canvas = el("canvas", { width: image.naturalWidth, height: image.naturalHeight, "aria-label": "mask" });
  let down = false;
  const stroke = (e) => {
    if (!down) return;
    const r = canvas.getBoundingClientRect();
    const scale = canvas.width / r.width;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#ff2a2a";
    ctx.beginPath();
    const radius = Math.max(0.75, ($("#brush").value / 2) * scale);  // at least a pixel on tiny images
    ctx.arc((e.clientX - r.left) * scale, (e.clientY - r.top) * scale, radius, 0, 2 * Math.PI);
    ctx.fill();
  };
  canvas.addEventListener("pointerdown", (e) => { down = true; canvas.setPointerCapture(e.pointerId); stroke(e); });
  canvas.addEventListener("pointermove", stroke);
  canvas.addEventListener("pointerup", () => { down = false; });
  $("#paint-stage").replaceChildren(image, canvas);
  Object.assign(paint, { canvas, image: blob });
  $("#inpaint-prompt").value = prompt;
  $("#inpaint-seed").value = seed;
  $("#inpaint-result").replaceChildren();
  $("#inpaint").hidden = false;
}

// The painted strokes as a black-and-white PNG (white = repaint), at the image's own size.
function maskDataUrl() {
  const { canvas } = paint;
  const painted = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  const out = new ImageData(canvas.width, canvas.height);
  for (let i = 0; i < painted.data.length; i += 4) {
    const v = painted.data[i + 3] > 0 ? 255 : 0;
    out.data.set([v, v, v, 255], i);
  }
  const off = el("canvas", { width: canvas.width, height: canvas.height });
  off.getContext("2d").putImageData(out, 0, 0);
  return off.toDataURL("image/png");
}

async function runInpaint() {
  await repaint($("#inpaint-run"), await blobToDataUrl(paint.image), maskDataUrl(),
                parseFloat($("#inpaint-strength").value), "inpainted");
}

// Outpainting = pad + inpaint: the picture on a larger transparent canvas, the new margins (and
// any painted strokes) as the mask, repainted from scratch.
async function runOutpaint() {
  const px = parseInt($("#outpaint-px").value, 10) || 0;
  const [l, r, t, b] = ["left", "right", "top", "bottom"].map((side) => ($(`#outpaint-${side}`).checked ? px : 0));
  if (px < 1 || l + r + t + b === 0) {
    showError(new Error("choose how many pixels to add and at least one side to extend"));
    return;
  }
  const bitmap = await createImageBitmap(paint.image);
  const size = { width: bitmap.width + l + r, height: bitmap.height + t + b };
  const picture = el("canvas", size);
  picture.getContext("2d").drawImage(bitmap, l, t);
  const mask = el("canvas", size);
  const m = mask.getContext("2d");
  m.fillStyle = "#ffffff";
  m.fillRect(0, 0, size.width, size.height);
  m.fillStyle = "#000000";
  m.fillRect(l, t, bitmap.width, bitmap.height);
  const strokes = el("img", { alt: "" });
  strokes.src = maskDataUrl();
  await strokes.decode();
  m.globalCompositeOperation = "lighten";  // painted strokes (white) are repainted too
  m.drawImage(strokes, l, t);
  await repaint($("#outpaint-run"), picture.toDataURL("image/png"), mask.toDataURL("image/png"), 1.0, "outpainted");
}

async function repaint(button, imageUrl, maskUrl, strength, what) {
  clearError();
  button.disabled = true;
  try {
    const result = await postJson("/sdapi/v1/img2img", {
      init_images: [imageUrl], mask: maskUrl, prompt: $("#inpaint-prompt").value,
      seed: parseInt($("#inpaint-seed").value, 10), denoising_strength: strength,
    });
    const info = JSON.parse(result.info);
    $("#inpaint-result").replaceChildren(...result.images.map((b64, i) => el("figure", {},
      el("img", { src: `data:image/png;base64,${b64}`, alt: what }), el("figcaption", {}, `seed ${info.all_seeds[i]}`))));
    setStatus(`${what} (job ${info.strata.job})`);
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
}

async function pick(figure, assetId, file, seed) {
  document.querySelectorAll("#gen-grid figure").forEach((f) => f.classList.toggle("picked", f === figure));
  const box = $("#gen-picked");
  const link = el("a", { download: `strata-${seed}.png` }, "Download PNG (with provenance)");
  if (file) link.href = await fileUrl(file);
  setPicked({ assetId, seed });
  const edit = el("button", { type: "button", onclick: () => openInpaint(assetId, seed, $("textarea[name=prompt]").value).catch(showError) },
    "Paint a mask & inpaint");
  box.replaceChildren(await assetImage(assetId, "picked image"),
    el("div", {}, el("p", {}, `Picked: seed ${seed}`), link, el("p", {}, el("code", {}, assetId.slice(0, 16) + "…")), edit));
  box.hidden = false;
}

// ---------------------------------------------------------------- workflow
const SAMPLE = `name: grade
seed: 7
nodes:
  - {id: photo, op: io.sample_image, params: {name: astronaut}}
  - {id: grade, op: enhance.exposure, inputs: {image: photo}, params: {stops: 0.5}}
outputs:
  graded.png: grade
`;

async function runWorkflow() {
  clearError();
  const log = $("#wf-log"), outputs = $("#wf-outputs");
  log.replaceChildren();
  outputs.replaceChildren();
  const text = $("#wf-text").value;
  const params = new URLSearchParams({ priority: $("#wf-priority").value, no_cache: $("#wf-nocache").checked });
  const type = text.trim().startsWith("{") ? "application/json" : "application/yaml";
  try {
    const job = await api(`/api/jobs?${params}`, { method: "POST", headers: { "Content-Type": type }, body: text });
    const done = await followJob(job.id, (e) => {
      const what = [e.event, e.node, e.step && `${e.step}/${e.total}`, e.error].filter(Boolean).join(" ");
      log.append(el("li", { class: e.event.includes("fail") ? "failed" : e.event === "job_finished" ? "done" : "" }, what));
      log.scrollTop = log.scrollHeight;
    });
    if (done.error) showError(new Error(done.error));
    for (const files of Object.values(done.result?.outputs || {})) {
      for (const file of files) {
        outputs.append(el("figure", {}, await mediaElement(file), el("figcaption", {}, file.name)));
      }
    }
  } catch (err) {
    showError(err.body?.issues ? new Error(err.body.issues.map((i) => `${i.node ?? ""} ${i.param ?? ""}: ${i.message}`).join("\n")) : err);
  }
}

async function upload(event) {
  const file = event.target.files[0];
  if (!file) return;
  clearError();
  try {
    const info = await api("/api/uploads", { method: "POST", headers: { "Content-Type": file.type }, body: file });
    const area = $("#wf-text");
    const at = area.selectionStart ?? area.value.length;
    area.value = area.value.slice(0, at) + info.ref + area.value.slice(at);
    setStatus(`uploaded ${file.name}: ${info.width}×${info.height} → ${info.ref.slice(0, 18)}…`);
  } catch (err) {
    showError(err);
  }
}

let ops = [];
function renderOps() {
  const filter = $("#ops-filter").value.toLowerCase();
  $("#ops-list").replaceChildren(...ops.filter((o) => o.op.includes(filter)).map((o) =>
    el("li", { onclick: () => showOp(o) }, o.op, " ", el("small", {}, o.layer))));
}
function showOp(op) {
  const params = Object.entries(op.params.properties || {}).map(([name, p]) =>
    `  ${name}: ${JSON.stringify(p.default ?? null)}   # ${p.description || ""}${p.minimum !== undefined ? ` [${p.minimum}, ${p.maximum}]` : ""}`);
  const inputs = Object.entries(op.inputs).map(([n, p]) => `  ${n}: ${p.type}${p.optional ? " (optional)" : ""}`);
  $("#op-detail").textContent = `${op.op} (v${op.version})\n${op.description.split("\n")[0]}\n\ninputs:\n${inputs.join("\n") || "  none"}\nparams:\n${params.join("\n") || "  none"}`;
}

// ---------------------------------------------------------------- history
async function loadRuns() {
  try {
    const { runs } = await api("/api/runs?limit=50");
    $("#runs tbody").replaceChildren(...runs.map((r) => el("tr", { onclick: () => showRun(r.id) },
      el("td", {}, r.id), el("td", {}, r.name), el("td", {}, r.status), el("td", {}, String(r.counts.executed || 0)),
      el("td", {}, String(r.counts.cached || 0)), el("td", {}, r.parent || ""))));
  } catch (err) {
    showError(err);
  }
}

async function showRun(runId) {
  clearError();
  const run = await api(`/api/runs/${runId}`);
  const box = $("#run-detail");
  const editors = {};
  const schemas = Object.fromEntries(ops.map((o) => [o.op, o]));
  const nodes = await Promise.all(run.nodes.map(async (n) => {
    const given = run.workflow.nodes.find((d) => d.id === n.node_id)?.params || {};
    editors[n.node_id] = schemas[n.op] ? paramForm(schemas[n.op].params, given)
      : { element: el("textarea", { rows: 2 }, JSON.stringify(given)), values() { return JSON.parse(this.element.value); } };
    const thumbs = el("div", { class: "thumbs" });
    for (const ids of Object.values(n.outputs)) for (const id of ids) thumbs.append(await assetImage(id, n.node_id));
    return el("div", { class: "node" },
      el("header", {}, el("strong", {}, n.node_id), el("span", {}, n.op), el("span", {}, n.status),
        el("span", {}, n.duration_s ? `${n.duration_s.toFixed(3)} s` : "")),
      n.error ? el("pre", { class: "failed" }, n.error) : null, editors[n.node_id].element, thumbs);
  }));
  const rerun = el("button", {
    onclick: async () => {
      try {
        const workflow = structuredClone(run.workflow);
        for (const node of workflow.nodes) if (editors[node.id]) node.params = editors[node.id].values();
        const job = await postJson("/api/jobs", { workflow, parent_run: run.id });
        setStatus(`rerun queued: ${job.id}`);
        const done = await followJob(job.id);
        setStatus(`rerun ${done.status}`);
        await loadRuns();
        if (done.result?.run_id) showRun(done.result.run_id);
      } catch (err) {
        showError(err);
      }
    },
  }, "Rerun with changes");
  box.replaceChildren(el("h2", {}, `${run.name} · ${run.id} · ${run.status}`),
    el("p", {}, "Change params and rerun: only nodes downstream of a change execute again."), rerun, ...nodes);
}

// ---------------------------------------------------------------- provenance
async function inspectFile(event) {
  const file = event.target.files[0];
  if (!file) return;
  clearError();
  const image = $("#prov-image");
  image.hidden = !file.type.startsWith("image/");
  if (!image.hidden) image.src = URL.createObjectURL(file);
  try {
    setStatus(`verifying ${file.name}…`);
    const report = await api("/api/verify", { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: file });
    setStatus(report.verdict);
    const prov = report.provenance || {};
    const rows = [["verdict", report.verdict], ["credentials", report.credentials], ["signer", report.signer],
      ["label", report.label], ["watermark", report.watermark], ["history", (report.history || []).join(" · ")],
      ["problems", (report.problems || []).join(" · ")],
      ...Object.entries(prov).filter(([k]) => k !== "workflow")]
      .filter(([, v]) => v !== null && v !== undefined && v !== "" && !(Array.isArray(v) && !v.length));
    $("#prov-items").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))]));
    $("#prov-lineage").replaceChildren();
    if (prov.asset_id) {
      try {
        $("#prov-lineage").append(el("h2", {}, "Lineage in this store"), lineageTree(await api(`/api/assets/${prov.asset_id}/lineage`)));
      } catch { /* made elsewhere: no lineage here */ }
    }
  } catch (err) {
    showError(err);
  }
}

function lineageTree(node) {
  const inputs = Object.entries(node.inputs || {}).flatMap(([port, subs]) => subs.map((s) => el("li", {}, `${port} ← `, lineageTree(s))));
  return el("ul", {}, el("li", {}, el("strong", {}, node.op), ` ${node.node_id} ${JSON.stringify(node.params)}`,
    inputs.length ? el("ul", {}, ...inputs) : null));
}

// ---------------------------------------------------------------- queue
const jobRows = new Map();
function showJob(job) {
  let row = jobRows.get(job.id);
  if (!row) {
    row = el("li", {}, el("span", { class: "st" }), job.id);
    jobRows.set(job.id, row);
    $("#jobs ol").prepend(row);
  }
  $(".st", row).textContent = job.status;
}
async function watchQueue() {
  try {
    const { jobs } = await api("/api/jobs?limit=20");
    jobs.reverse().forEach(showJob);
  } catch { return; }
  const ws = new WebSocket(wsUrl("/api/events"));
  const statusOf = { job_queued: "queued", job_started: "running", job_requeued: "queued" };
  ws.onmessage = (msg) => {
    const e = JSON.parse(msg.data);
    if (e.event === "job_finished") showJob({ id: e.job, status: e.status });
    else if (statusOf[e.event]) showJob({ id: e.job, status: statusOf[e.event] });
    else if (e.event === "node_progress") showJob({ id: e.job, status: `${e.step}/${e.total}` });
  };
  ws.onclose = () => setTimeout(watchQueue, 3000);
}

// ---------------------------------------------------------------- start-up
function switchTab(name) {
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("active", s.id === name));
  if (name === "history") loadRuns();
}

async function start() {
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => switchTab(b.dataset.tab)));
  $("#gen-form").addEventListener("submit", generate);
  $("#inpaint-run").addEventListener("click", runInpaint);
  $("#outpaint-run").addEventListener("click", runOutpaint);
  $("#paint-clear").addEventListener("click", () => paint.canvas?.getContext("2d").clearRect(0, 0, paint.canvas.width, paint.canvas.height));
  $("#wf-text").value = SAMPLE;
  $("#wf-submit").addEventListener("click", runWorkflow);
  $("#wf-upload").addEventListener("change", upload);
  $("#ops-filter").addEventListener("input", renderOps);
  $("#runs-refresh").addEventListener("click", loadRuns);
  $("#prov-file").addEventListener("change", inspectFile);
  try {
    const health = await api("/api/health");
    setStatus(`strata ${health.version} · ${health.workers} worker(s)`);
    ops = (await api("/api/ops")).ops;
    renderOps();
    await Promise.all([setupCompose(ops), setupVideo(ops)]);
    document.body.dataset.ready = "true";  // every tab is built (tests wait for this)
  } catch (err) {
    showError(err);
  }
  watchQueue();
}

start();
