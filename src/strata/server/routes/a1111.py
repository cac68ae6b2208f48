"""AUTOMATIC1111-compatible endpoints (``/sdapi/v1``), so clients such as ``webuiapi`` work.

txt2img/img2img are synchronous, as in A1111: the request queues a job and answers when it
ends, with base64 PNGs whose metadata carries the prompt and seed. Until a text-to-image
(img2img, inpaint) model is installed they answer 503 with a message saying so. Which request
fields are honored: :mod:`strata.server.a1111`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pydantic
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from strata.errors import ModelError
from strata.server.a1111 import (
    SAMPLERS, Img2ImgRequest, PngInfoRequest, Txt2ImgRequest, UnknownSampler, ignored_fields, img2img_workflow,
    info_json, requested_model, to_generate_request,
)
from strata.server.errors import ApiError
from strata.server.generation import GenerateRequest, generate_workflow, require
from strata.server.queue import Job
from strata.server.routes.jobs import submit_job
from strata.server.state import ServerState, authorized_client, get_state
from strata.server.uploads import check_image_bytes, decode_base64_image, store_upload

router = APIRouter(prefix="/sdapi/v1", tags=["a1111"], dependencies=[Depends(authorized_client)])

WAIT_POLL_S = 0.1
WAIT_LIMIT_S = 3600.0


def _honors_size(st: ServerState, capability: str, req: Txt2ImgRequest) -> bool:
    """True when the request's model is a user's Stable Diffusion model (it takes width/height);
    an unknown model is a 400 naming the installed ones."""
    try:
        entry = st.models.find(capability, requested_model(req))
    except ModelError as exc:
        raise ApiError(400, "unknown_model", str(exc)) from None
    return bool(getattr(entry, "info", {}).get("arch"))


def _translate(req: Txt2ImgRequest, honor_size: bool = False) -> tuple[GenerateRequest, list[str]]:
    try:
        return to_generate_request(req, honor_size=honor_size)
    except UnknownSampler as exc:
        raise ApiError(400, "unknown_sampler", str(exc)) from None
    except pydantic.ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApiError(400, "bad_request", f"{detail} (batch_size × n_iter is at most 64)") from None


async def _wait(st: ServerState, request: Request, job_id: str) -> Job:
    """Wait for the job to end (A1111's calls block); stop waiting if the client goes away."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_S
    while loop.time() < deadline:
        job = await run_in_threadpool(st.queue.get, job_id)
        if job is not None and job.done:
            return job
        if await request.is_disconnected():
            break
        await asyncio.sleep(WAIT_POLL_S)
    raise ApiError(504, "still_running", f"job {job_id} has not finished; follow it at /api/jobs/{job_id}")


def _response(st: ServerState, job: Job, gen: GenerateRequest, req: Txt2ImgRequest, ignored: list[str],
              notes: list[str]) -> dict[str, Any]:
    if job.status == "failed":
        raise ApiError(500, "generation_failed", f"job {job.id} failed: {job.error}")
    files = [e for entries in ((job.result or {}).get("outputs") or {}).values() for e in entries]
    blobs = [st.store.blobs.get(e["sha256"]) for e in files]
    infotexts = [_parameters_text(b) for b in blobs]
    info = info_json(gen, job_id=job.id, run_id=job.run_id, ignored=ignored, substitutions=notes,
                     infotexts=infotexts if blobs and all(infotexts) else None)
    if job.status == "cancelled":
        info["strata"]["interrupted"] = True
    images = [base64.b64encode(b).decode() for b in blobs] if req.send_images else []
    return {"images": images, "parameters": req.model_dump(), "info": json.dumps(info)}


def _parameters_text(png: bytes) -> str | None:
    import PIL.Image

    try:
        value = PIL.Image.open(io.BytesIO(png)).info.get("parameters")
    except Exception:  # noqa: BLE001 - metadata is optional here; the image is what matters
        return None
    return value if isinstance(value, str) else None


@router.post("/txt2img", summary="A1111 txt2img (synchronous)")
async def txt2img(req: Txt2ImgRequest, request: Request, client: str = Depends(authorized_client)) -> dict[str, Any]:
    st = get_state(request)
    spec = require(st.generators["text-to-image"], st.models)
    honor_size = _honors_size(st, st.generators["text-to-image"].capability, req)
    gen, notes = _translate(req, honor_size)
    workflow, ignored = generate_workflow(gen, spec)
    ignored += ignored_fields(req, honor_size=honor_size)
    job = await run_in_threadpool(submit_job, st, workflow, kind="a1111", client=client, extra={"ignored": ignored})
    return _response(st, await _wait(st, request, job.id), gen, req, ignored, notes)


def _store_image(st: ServerState, text: str, what: str, client: str) -> str:
    data = decode_base64_image(text, what=what)
    info = check_image_bytes(data, "", st.config, what=what)
    store_upload(st.queue, data, info, client)
    return f"asset:{info.sha256}"


@router.post("/img2img", summary="A1111 img2img; with a mask → inpainting (synchronous)")
async def img2img(req: Img2ImgRequest, request: Request, client: str = Depends(authorized_client)) -> dict[str, Any]:
    st = get_state(request)
    if not req.init_images:
        raise ApiError(400, "bad_request", "init_images is empty; send one base64 image to start from")
    kind = st.generators["inpaint" if req.mask else "img2img"]
    spec = require(kind, st.models)  # before anything is stored
    gen, notes = _translate(req)
    init_ref = await run_in_threadpool(_store_image, st, req.init_images[0], "init_images[0]", client)
    mask_ref = await run_in_threadpool(_store_image, st, req.mask, "mask", client) if req.mask else None
    workflow, ignored = img2img_workflow(req, gen, op=kind.op, declared=spec.param_names, init_ref=init_ref,
                                         mask_ref=mask_ref)
    ignored += [f for f in ignored_fields(req) if f not in ("init_images", "mask", "denoising_strength")]
    job = await run_in_threadpool(submit_job, st, workflow, kind="a1111", client=client, extra={"ignored": ignored})
    return _response(st, await _wait(st, request, job.id), gen, req, ignored, notes)


def eta_relative(elapsed_s: float, fraction: float) -> float:
    """Seconds left, as A1111 estimates it: the elapsed time scaled to the whole job, minus what has passed."""
    return elapsed_s / fraction - elapsed_s if fraction > 0 else 0.0


@router.get("/progress", summary="A1111 progress of the current job")
def progress(request: Request, skip_current_image: bool = False) -> dict[str, Any]:
    st = get_state(request)
    running = st.queue.list(status="running", limit=1)
    counts = st.queue.counts()
    state: dict[str, Any] = {"skipped": False, "interrupted": False, "job": "", "job_count":
                             counts.get("queued", 0) + counts.get("running", 0), "job_timestamp": "0", "job_no": 0,
                             "sampling_step": 0, "sampling_steps": 0}
    fraction, image, eta = 0.0, None, 0.0
    if running:
        job = running[0]
        state.update(job=job.id, interrupted=job.cancel_requested)
        msg = st.hub.latest_progress(job.id)
        if msg is not None and msg.get("total"):
            state.update(sampling_step=msg["step"], sampling_steps=msg["total"])
            fraction = msg["step"] / msg["total"]
            if job.started is not None:
                eta = eta_relative(max(0.0, time.time() - job.started), fraction)
            if not skip_current_image and msg.get("preview"):
                image = str(msg["preview"]).partition(",")[2]
    return {"progress": fraction, "eta_relative": round(eta, 2), "state": state, "current_image": image, "textinfo": None}


@router.post("/interrupt", summary="A1111 interrupt: stop your running jobs")
def interrupt(request: Request, client: str = Depends(authorized_client)) -> dict[str, Any]:
    st = get_state(request)
    stopped = []
    for job in st.queue.list(status="running", limit=1000):
        if job.client == client:
            st.queue.cancel(job.id)
            st.pool.cancel_running(job.id)
            stopped.append(job.id)
    return {"interrupted": stopped}


def _text_to_image_models(st: ServerState) -> list[dict[str, Any]]:
    out = []
    for entry in getattr(st.models, "entries", {}).values():
        if "text-to-image" not in entry.capabilities:
            continue
        try:
            digest = entry.weights_hash()
        except ModelError:
            continue  # weights missing: not usable, not listed
        path = getattr(entry, "info", {}).get("path")
        filename = Path(path).name if path else (entry.files[0].name if entry.files else entry.id)
        out.append({"title": f"{entry.id} [{digest[:10]}]", "model_name": entry.id, "hash": digest[:10],
                    "sha256": digest, "filename": filename, "config": None})
    return out


@router.get("/sd-models", summary="A1111 model list: installed text-to-image models")
def sd_models(request: Request) -> list[dict[str, Any]]:
    return _text_to_image_models(get_state(request))


@router.get("/samplers", summary="A1111 sampler list")
def samplers() -> list[dict[str, Any]]:
    return [{"name": name, "aliases": [ours], "options": {}} for name, ours in SAMPLERS.items()]


@router.get("/options", summary="A1111 options (read-only)")
def options(request: Request) -> dict[str, Any]:
    models = _text_to_image_models(get_state(request))
    return {"sd_model_checkpoint": models[0]["title"] if models else "", "samples_format": "png",
            "sd_checkpoint_hash": models[0]["sha256"] if models else "", "CLIP_stop_at_last_layers": 1,
            "eta_noise_seed_delta": 0}


@router.post("/options", summary="A1111 options: not settable in strata")
def set_options() -> None:
    raise ApiError(501, "options_read_only", "strata's options are read-only; choose the model per request with "
                   "override_settings.sd_model_checkpoint")


@router.get("/scripts", summary="A1111 script list (strata has no A1111 scripts)")
def scripts() -> dict[str, list[str]]:
    return {"txt2img": [], "img2img": []}


@router.post("/png-info", summary="A1111 png-info: the generation parameters embedded in an image")
def png_info(req: PngInfoRequest, request: Request) -> dict[str, Any]:
    from strata.provenance.metadata import describe

    st = get_state(request)
    data = decode_base64_image(req.image, what="image")
    check_image_bytes(data, "", st.config, what="image")
    fd, name = tempfile.mkstemp(prefix="strata-pnginfo-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        items = describe(name)
        import PIL.Image

        with PIL.Image.open(name) as im:
            text = im.info.get("parameters")
    finally:
        Path(name).unlink(missing_ok=True)
    items.pop("path", None)
    return {"info": text if isinstance(text, str) else "", "items": items, "parameters": items.get("a1111") or {}}
