// Images the user brought in — uploads and picked generations — shared by Compose and Video.
// Each is uploaded once (POST /api/uploads) so workflows can load it as asset:<sha256>; a
// picked generation is fetched as PNG and uploaded the same way (workflows over HTTP load
// files by upload ref only).

import { api, clearError, el, setStatus, showError } from "./common.js";

const items = [];      // {ref, name, width, height, url}
const trays = [];      // {box, actions: [{label, run(item)}]}
let picked = null;     // the generation picked in the Generate tab: {assetId, seed}

// Upload ``blob``; listed = shown in the trays (a generated solid-color base is not).
export async function uploadBlob(blob, name, { listed = true } = {}) {
  const info = await api("/api/uploads", { method: "POST", headers: { "Content-Type": blob.type }, body: blob });
  const item = { ref: info.ref, name, width: info.width, height: info.height, url: URL.createObjectURL(blob) };
  if (listed) {
    items.push(item);
    setStatus(`${name}: ${info.width}×${info.height} → ${info.ref.slice(0, 18)}…`);
    renderTrays();
  }
  return item;
}

export const uploadImage = (file) => uploadBlob(file, file.name);

export function setPicked(value) {
  picked = value;
  document.querySelectorAll(".add-picked").forEach((b) => { b.disabled = false; });
}

async function addPicked() {
  if (!picked) return null;
  const blob = await api(`/api/assets/${picked.assetId}`);
  return uploadBlob(new Blob([blob], { type: "image/png" }), `generation seed ${picked.seed}`);
}

// A tray: upload and "picked generation" buttons, then a thumbnail per image with this tab's actions.
export function libraryTray(box, actions) {
  const input = el("input", { type: "file", accept: "image/png,image/jpeg,image/webp,image/tiff" });
  const guard = (fn) => async (...args) => {
    clearError();
    try { await fn(...args); } catch (err) { showError(err); }
  };
  input.addEventListener("change", guard(async () => {
    if (input.files[0]) await uploadImage(input.files[0]);
    input.value = "";
  }));
  const pickedButton = el("button", { type: "button", class: "add-picked", disabled: picked ? null : "" }, "Add the picked generation");
  pickedButton.addEventListener("click", guard(addPicked));
  const list = el("div", { class: "tray-items" });
  box.replaceChildren(el("div", { class: "row" }, el("label", { class: "upload" }, "Upload image", input), pickedButton), list);
  trays.push({ list, actions, guard });
  renderTrays();
}

function renderTrays() {
  for (const { list, actions, guard } of trays) {
    list.replaceChildren(...items.map((item, i) => el("figure", { class: "tray-item" },
      el("img", { src: item.url, alt: item.name }),
      el("figcaption", {}, `${i + 1}. ${item.name} · ${item.width}×${item.height}`),
      ...actions.map((a) => el("button", { type: "button", class: "small", onclick: guard(() => a.run(item)),
        "aria-label": `${a.label}: image ${i + 1}` }, a.label)))));
    if (!items.length) list.append(el("p", { class: "hint" }, "Upload an image or add the picked generation."));
  }
}

// A card in an ordered stack (compose's layers, video's scenes): the image, its params form and
// a remove button; the entry {item, form, card} is pushed onto ``stack`` and shown in ``box``.
export function stackCard(stack, box, item, form, what) {
  const entry = { item, form };
  const remove = () => { stack.splice(stack.indexOf(entry), 1); entry.card.remove(); };
  entry.card = el("li", { class: "layer" }, el("img", { src: item.url, alt: `${what}: ${item.name}` }),
    el("div", {}, el("strong", {}, item.name), el("button", { type: "button", class: "small", onclick: remove }, `Remove ${what}`),
      form.element));
  stack.push(entry);
  box.append(entry.card);
  return entry;
}
