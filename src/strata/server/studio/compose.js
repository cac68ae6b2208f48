// Compose: a base (solid color or an image) → layers with placement, opacity and blend mode
// (composite.layers) → an optional text layer (composite.text) → enhance steps → upscale.
// Every control comes from an op schema the server sent; the tab builds one workflow from
// them and runs it as a job.

import { $, el, fileUrl, opModels, paramForm, runButton } from "./common.js";
import { libraryTray, stackCard, uploadBlob } from "./library.js";

// Enhance steps in the order they run, with the params a step starts from when switched on
// (so switching one on changes the picture; the defaults of most are "unchanged").
const ENHANCE = [
  ["denoise", "enhance.denoise", {}],
  ["balance", "enhance.white_balance", { gray_world: true }],
  ["exposure", "enhance.exposure", { stops: 0.3 }],
  ["contrast", "enhance.contrast", { factor: 1.2 }],
  ["saturation", "enhance.saturation", { factor: 1.2 }],
  ["lut", "enhance.lut", {}],
  ["sharpen", "enhance.sharpen", { amount: 0.6 }],
];

const state = { base: null, layers: [], enhance: [], text: null, schemas: {} };

export function setupCompose(ops) {
  const schemas = state.schemas = Object.fromEntries(ops.map((o) => [o.op, o]));
  libraryTray($("#compose-tray"), [
    { label: "Use as base", run: (item) => setBase(item) },
    { label: "Add as layer", run: (item) => addLayer(item) },
  ]);
  $("#base-clear").addEventListener("click", () => setBase(null));

  const text = schemas["composite.text"];
  if (text) {
    state.text = paramForm(text.params, { text: "strata", x: 8, y: 8, size_px: 24 }, { node: "text", omit: ["font"] });
    $("#compose-text").append(state.text.element);
  } else {
    $("#compose-text-section").hidden = true;
  }

  for (const [id, op, start] of ENHANCE) {
    const schema = schemas[op];
    if (!schema) continue;
    const toggle = el("input", { type: "checkbox", id: `enh-${id}` });
    const omit = op === "enhance.lut" ? ["path"] : [];
    const form = paramForm(schema.params, start, { node: id, omit });
    const extra = op === "enhance.lut" ? lutSelect(schema) : null;
    const body = el("div", { hidden: "" }, extra, form.element);
    toggle.addEventListener("change", () => { body.hidden = !toggle.checked; });
    $("#compose-enhance").append(el("fieldset", { class: "step", "data-node": id },
      el("legend", {}, el("label", { class: "check", for: `enh-${id}` }, toggle, `${id} — ${schema.description.split("\n")[0].replaceAll("``", "")}`)), body));
    state.enhance.push({ id, op, toggle, params: () => ({ ...form.values(), ...(extra ? { path: $("select", extra).value } : {}) }) });
  }

  // upscale choices: "lanczos:<factor>" (enhance.upscale_lanczos), "learned:<scale>" (image.upscale, a model)
  const lanczos = schemas["enhance.upscale_lanczos"]?.params.properties.factor;
  for (let f = lanczos?.minimum; lanczos && f <= lanczos.maximum; f++) $("#upscale").append(el("option", { value: `lanczos:${f}` }, `${f}× Lanczos`));
  for (const f of schemas["image.upscale"]?.params.properties.scale.enum || []) {
    $("#upscale").append(el("option", { value: `learned:${f}` }, `${f}× learned (image.upscale)`));
  }
  $("#upscale").closest("label").hidden = $("#upscale").options.length === 1;  // neither op on this server
  const learned = () => (schemas["image.upscale"] ? opModels("image.upscale", "upscale models") : null);
  runButton("compose", { build: async () => { await learned(); return buildWorkflow(); }, show: showComposite,
    failure: "the composite was not made" });
  return learned();
}

// The LUTs shipped with strata, as the op's documentation names them (strata:luts/<name>).
function lutSelect(schema) {
  const names = [...new Set([...schema.description.matchAll(/``([\w-]+\.cube)``/g)].map((m) => m[1]))];
  const select = el("select", { "data-node": "lut", "data-param": "path" },
    ...names.map((n) => el("option", { value: `strata:luts/${n}` }, n)));
  return el("label", {}, "LUT — a shipped grade", select);
}

function setBase(item) {
  state.base = item;
  $("#base-image").replaceChildren(...(item ? [el("img", { src: item.url, alt: "base image" }), `${item.name} · ${item.width}×${item.height}`] : []));
  $("#base-clear").hidden = !item;
  $("#base-solid").hidden = Boolean(item);
}

function addLayer(item) {
  const schema = state.schemas["composite.layers"].params.$defs.LayerSettings;
  const start = { x: 0, y: 0, scale: 1, rotation_deg: 0, opacity: 1, mode: "normal" };
  stackCard(state.layers, $("#compose-layers"), item, paramForm(schema, start, { node: "layers", omit: ["mask"] }), "layer");
}

// A solid-color PNG drawn in the page and uploaded: the base when no image is chosen.
async function solidBase() {
  const canvas = el("canvas", { width: $("#base-width").value, height: $("#base-height").value });
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = $("#base-color").value;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  return uploadBlob(blob, "solid color", { listed: false });
}

async function buildWorkflow() {
  const base = state.base || await solidBase();
  const nodes = [{ id: "base", op: "io.load_image", params: { path: base.ref } }];
  let last = "base";
  if (state.layers.length) {
    state.layers.forEach((layer, i) => {
      nodes.push({ id: `img${i}`, op: "io.load_image", params: { path: layer.item.ref } });
      // tag the controls with this layer's place in settings, so issues find them
      layer.card.querySelectorAll("[data-node=layers]").forEach((c) => { c.dataset.param = `settings.${i}.${c.name}`; });
    });
    nodes.push({ id: "layers", op: "composite.layers", inputs: { base: last, layers: state.layers.map((_, i) => `img${i}`) },
      params: { settings: state.layers.map((layer) => layer.form.values()) } });
    last = "layers";
  }
  if (state.text && $("#text-on").checked) {
    nodes.push({ id: "text", op: "composite.text", inputs: { image: last }, params: state.text.values() });
    last = "text";
  }
  for (const step of state.enhance) {
    if (!step.toggle.checked) continue;
    nodes.push({ id: step.id, op: step.op, inputs: { image: last }, params: step.params() });
    last = step.id;
  }
  if ($("#upscale").value) {
    const [kind, factor] = $("#upscale").value.split(":");
    nodes.push(kind === "learned" ? { id: "upscale", op: "image.upscale", inputs: { image: last }, params: { scale: Number(factor) } }
      : { id: "upscale", op: "enhance.upscale_lanczos", inputs: { image: last }, params: { factor: Number(factor) } });
    last = "upscale";
  }
  return { name: "compose", nodes, outputs: { "composite.png": last } };
}

async function showComposite(outputs) {
  const src = await fileUrl(outputs["composite.png"][0]);
  $("#compose-result").replaceChildren(el("img", { src, alt: "composite result" }),
    el("a", { href: src, download: "composite.png", class: "download" }, "Download composite.png (with provenance)"));
}
