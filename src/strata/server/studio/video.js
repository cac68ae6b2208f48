// Video: scenes from library images, each a camera move (motion.camera), joined by transitions
// (motion.sequence); narration (sound.speech) with captions from its word timings
// (sound.subtitles → motion.captions); optional music (sound.music) mixed under the voice
// (sound.mix); then video.render and a poster frame (video.poster). Mirrors
// examples/narrated.yaml, with fixed-length scenes instead of video.timeline.

import { $, el, fileUrl, opModels, paramForm, runButton } from "./common.js";
import { libraryTray, stackCard } from "./library.js";

const SCENE_PARAMS = ["move", "duration_s", "zoom", "easing"];
const FRAME_PARAMS = ["width", "height", "fps"];
const only = (schema, keep) => Object.keys(schema.properties).filter((k) => !keep.includes(k));

const state = { scenes: [], forms: {}, schemas: {} };

export async function setupVideo(ops) {
  const schemas = state.schemas = Object.fromEntries(ops.map((o) => [o.op, o]));
  const needed = ["motion.camera", "motion.sequence", "sound.speech", "sound.subtitles", "motion.captions", "sound.mix", "video.render", "video.poster"];
  const missing = needed.filter((op) => !schemas[op]);
  if (missing.length) {
    $("#video").replaceChildren(el("p", { class: "panel" }, `This server lacks the ops the video tab needs: ${missing.join(", ")}.`));
    return;
  }
  libraryTray($("#video-tray"), [{ label: "Add as scene", run: (item) => addScene(item) }]);
  const camera = schemas["motion.camera"].params;
  const form = (id, box, op, start, opts) => { state.forms[id] = paramForm(schemas[op].params, start, opts); $(box).append(state.forms[id].element); };
  form("frame", "#video-frame", "motion.camera", {}, { node: "frame", omit: only(camera, FRAME_PARAMS) });
  form("seq", "#video-transition", "motion.sequence", {}, { node: "seq" });
  form("voice", "#video-voice", "sound.speech", {}, { node: "voice", omit: ["text", "model", "variation", "volume"] });
  form("captions", "#video-captions", "motion.captions", {}, { node: "captions" });
  form("film", "#video-render", "video.render", { audio_overrun: "hold" }, { node: "film" });
  if (schemas["sound.music"]) {
    form("music", "#video-music", "sound.music", {}, { node: "music", omit: ["duration_s", "bars", "soundfont", "model", "sample_rate_hz"] });
  } else {
    $("#video-music-section").replaceChildren(el("p", { class: "hint" }, "This server has no sound.music op."));
  }
  $("#music-on").addEventListener("change", () => { $("#video-music").hidden = !$("#music-on").checked; });
  runButton("video", { build: async () => { const workflow = buildWorkflow(); await listModels(); return workflow; },
    show: showVideo, failure: "the video did not render" });
  await listModels();
}

// Installed models (GET /api/ops/{op}/models): the voice choices and a note on each; listed
// again before every render, so a model installed meanwhile shows up.
const listModels = () => Promise.all([opModels("sound.speech", "voices", $("#voice-model")),
  opModels("sound.music", "music models")]);

function addScene(item) {
  const camera = state.schemas["motion.camera"].params;
  // node "cam" until the build numbers the scenes (cam0, cam1, ...)
  const form = paramForm(camera, { duration_s: 2 }, { node: "cam", omit: only(camera, SCENE_PARAMS) });
  stackCard(state.scenes, $("#video-scenes"), item, form, "scene");
}

function buildWorkflow() {
  if (!state.scenes.length) throw new Error("add at least one scene: upload an image (or add the picked generation), then “Add as scene”");
  const f = state.forms;
  const frame = f.frame.values();
  // the frame params go to every camera; cam0's issues about them land beside these controls
  $("#video-frame").querySelectorAll("[data-param]").forEach((c) => { c.dataset.node = "cam0"; });
  const nodes = [];
  state.scenes.forEach((scene, i) => {
    // this scene's controls name node cam<i>, so the server's issues land beside them
    scene.card.dataset.node = `cam${i}`;
    scene.card.querySelectorAll("[data-param]").forEach((c) => { c.dataset.node = `cam${i}`; });
    nodes.push({ id: `img${i}`, op: "io.load_image", params: { path: scene.item.ref } },
      { id: `cam${i}`, op: "motion.camera", inputs: { image: `img${i}` }, params: { ...scene.form.values(), ...frame } });
  });
  const seq = f.seq.values();
  let clip = "cam0";
  if (state.scenes.length > 1) {
    nodes.push({ id: "seq", op: "motion.sequence", inputs: { clips: state.scenes.map((_, i) => `cam${i}`) }, params: seq });
    clip = "seq";
  }
  const outputs = { "video.mp4": "film", "poster.png": "poster" };
  const tracks = [], settings = [];
  const text = $("#narration").value.trim();
  if (text) {
    nodes.push({ id: "voice", op: "sound.speech", params: { ...f.voice.values(), text, model: $("#voice-model").value || null } });
    tracks.push("voice.audio");
    settings.push({ role: "voice" });
  }
  if ($("#music-on").checked) {
    nodes.push({ id: "music", op: "sound.music", params: { ...f.music.values(), duration_s: pictureLength(seq) } });
    tracks.push("music.audio");
    settings.push({ role: "music", gain_db: Number($("#music-gain").value) });
  }
  let picture = clip;
  if (text && $("#captions-on").checked) {
    nodes.push({ id: "subs", op: "sound.subtitles", inputs: { words: "voice.words" } },
      { id: "captions", op: "motion.captions", inputs: { clip, subtitles: "subs" }, params: f.captions.values() });
    picture = "captions";
    Object.assign(outputs, { "captions.vtt": "subs", "captions.srt": "subs" });
  }
  const render = { id: "film", op: "video.render", inputs: { clip: picture }, params: f.film.values() };
  if (tracks.length) {
    nodes.push({ id: "mix", op: "sound.mix", inputs: { tracks }, params: { settings } });
    render.inputs.audio = "mix";
    outputs["sound.wav"] = "mix";
  }
  nodes.push(render, { id: "poster", op: "video.poster", inputs: { clip } });
  return { name: "video", nodes, outputs };
}

// The picture's length: the scenes minus the transitions' overlaps (motion.sequence's rule).
function pictureLength(seq) {
  const durations = state.scenes.map((s) => s.form.values().duration_s ?? state.schemas["motion.camera"].params.properties.duration_s.default);
  const props = state.schemas["motion.sequence"].params.properties;
  const overlap = (seq.transition ?? props.transition.default) === "cut" ? 0 : seq.transition_s ?? props.transition_s.default;
  return durations.reduce((a, b) => a + b, 0) - (durations.length - 1) * overlap;
}

async function showVideo(out) {
  const poster = await fileUrl(out["poster.png"][0]);
  const video = await fileUrl(out["video.mp4"][0]);
  const links = await Promise.all(Object.entries(out).map(async ([name, [file]]) =>
    el("a", { href: await fileUrl(file), download: name, class: "download" }, `Download ${name}`)));
  $("#video-result").replaceChildren(
    el("video", { src: video, poster, controls: "", preload: "metadata", "aria-label": "rendered video" }),
    el("figure", {}, el("img", { src: poster, alt: "poster frame" }), el("figcaption", {}, "poster frame")),
    el("div", { class: "row" }, ...links));
}
