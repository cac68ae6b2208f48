"""``strata verify FILE``: is this file what it says it is, and how was it made?

Three independent sources, each read on its own so that one missing or damaged source never
hides the others:

1. **Content credentials** (C2PA), read with c2pa's Reader with strata's local root (and
   ``$STRATA_TRUST_ANCHORS``) as trust anchors. The answer is one of

   ``trusted``    the signature is valid and the signer chains to a trust anchor;
   ``untrusted``  the signature is valid, but the signer is unknown here (someone else's
                  strata, another tool) — the content has not changed since it was signed;
   ``invalid``    the file changed after signing, or the credentials are damaged;
   ``unsigned``   the file carries no credentials.

2. **Embedded provenance** (:mod:`strata.provenance.metadata`: PNG text chunks / XMP), and for
   audio and video the ``org.strata.provenance`` assertion in the credentials.
3. **The invisible watermark** (:mod:`strata.provenance.watermark`) in the pixels, which
   survives metadata stripping and, most of the time, re-encoding, resizing and cropping
   (``bench/results/watermark.json``).

:func:`verify_file` returns a :class:`VerifyReport` with each answer and the file's history in
words. It never raises for a bad *file* (not media, truncated, foreign or damaged
credentials): those are answers. It raises :class:`~strata.errors.MediaError` only when there
is no file to look at.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from strata.errors import MediaError, StrataError

Credentials = Literal["trusted", "untrusted", "invalid", "unsigned", "unavailable"]
Kind = Literal["image", "audio", "video", "unknown"]

_ACTION_WORDS = {
    "c2pa.created": "created",
    "c2pa.opened": "opened",
    "c2pa.edited": "edited",
    "c2pa.color_adjustments": "colour-adjusted",
    "c2pa.cropped": "cropped",
    "c2pa.resized": "resized",
    "c2pa.orientation": "rotated/flipped",
    "c2pa.filtered": "filtered (sharpen/denoise)",
    "c2pa.placed": "composited",
}


@dataclass
class VerifyReport:
    """What ``strata verify`` found in a file.

    Attributes:
        path: the file.
        kind: "image", "audio", "video" or "unknown" (not a media format strata reads).
        mime: the detected MIME type, or None.
        credentials: "trusted", "untrusted", "invalid", "unsigned" or "unavailable" (c2pa-python
            is not installed).
        credentials_detail: why (validation failure codes, the reader's error, ...).
        signer: who signed (certificate common name and issuer), if signed.
        label: "AI-generated" / "edited with strata" from the embedded provenance, if any.
        provenance: the strata provenance (embedded metadata, else the credentials), as a dict.
        watermark: "found", "not found", "not checked" (not an image/video, too small, off)
            or "unreadable" (the pixels could not be decoded).
        watermark_asset_hint: the four hex digits of the asset id carried by the watermark.
        history: the file's history in sentences.
        problems: things that are wrong or inconsistent (damaged metadata, a watermark that
            names another asset, ...).
    """

    path: str
    kind: Kind = "unknown"
    mime: str | None = None
    credentials: Credentials = "unsigned"
    credentials_detail: str = ""
    signer: str | None = None
    label: str | None = None
    provenance: dict[str, Any] | None = None
    watermark: str = "not checked"
    watermark_asset_hint: str | None = None
    history: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """One line: the credentials' answer, then what the file says it is."""
        creds = {
            "trusted": f"Trusted content credentials (signed by {self.signer})",
            "untrusted": f"Valid content credentials from an unknown signer ({self.signer}); not trusted here",
            "invalid": "INVALID content credentials: the file was changed after signing, or they are damaged",
            "unsigned": "No content credentials",
            "unavailable": "Content credentials not checked (c2pa-python is not installed)",
        }[self.credentials]
        if self.kind == "unknown":
            return "Not a media file strata can verify (PNG, JPEG, WebP, TIFF, WAV or MP4)"
        tail = []
        if self.label:
            tail.append(self.label)
        if self.watermark == "found":
            tail.append("strata watermark present")
        return creds + ("; " + ", ".join(tail) if tail else "")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


# ----------------------------------------------------------------------------- sniffing


def sniff(head: bytes) -> tuple[Kind, str | None]:
    """(kind, MIME type) from a file's first bytes; ("unknown", None) if not a format strata signs."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "image/webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image", "image/tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio", "audio/wav"
    if head[4:8] == b"ftyp":
        return "video", "video/mp4"
    return "unknown", None


# ----------------------------------------------------------------------------- credentials


def _read_credentials(data: bytes, mime: str, report: VerifyReport) -> dict[str, Any] | None:
    """Fill the credentials fields; return the manifest store (JSON) when there is one."""
    try:
        import c2pa
    except ImportError:
        report.credentials = "unavailable"
        report.credentials_detail = "pip install c2pa-python to check content credentials"
        return None
    from strata.provenance.credentials import trust_anchors

    anchors = trust_anchors()
    context = c2pa.Context.from_dict({"trust": {"user_anchors": anchors}}) if anchors else None
    try:
        reader = c2pa.Reader(mime, io.BytesIO(data), context=context) if context else c2pa.Reader(mime, io.BytesIO(data))
        with reader:
            store = json.loads(reader.json())
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
    except c2pa.C2paError as e:
        text = str(e)
        if "ManifestNotFound" in type(e).__name__ or "no JUMBF" in text or "not found" in text.lower() and "manifest" in text.lower():
            report.credentials = "unsigned"
            return None
        # A C2PA manifest store is a JUMBF box labelled "c2pa": if its bytes are there, the
        # credentials exist but are damaged; if not, the file was never signed (and may just be
        # damaged itself, which the pixel check reports).
        if b"jumb" in data and b"c2pa" in data:
            report.credentials = "invalid"
            report.credentials_detail = f"the file is damaged or truncated; its content credentials cannot be read ({text})"
        else:
            report.credentials = "unsigned"
            report.problems.append(f"the file's structure is damaged or truncated ({text})")
        return None
    finally:
        if context is not None:
            context.close()
    active = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    info = active.get("signature_info") or {}
    if info:
        report.signer = f"{info.get('common_name') or '?'}, issued by {info.get('issuer') or '?'}"
    failures = [f for f in (results.get("activeManifest") or {}).get("failure", [])]
    codes = [f.get("code", "") for f in failures]
    if state == "Trusted":
        report.credentials = "trusted"
    elif state == "Valid" or (failures and set(codes) <= {"signingCredential.untrusted"}):
        report.credentials = "untrusted"
        report.credentials_detail = "the signature is valid, but its certificate does not chain to a trusted root here"
    else:
        report.credentials = "invalid"
        report.credentials_detail = "; ".join(f"{f.get('code')}: {f.get('explanation', '')}" for f in failures) or (
            f"validation state {state!r}")
    return store


def _agent_name(agent: Any) -> str:
    if isinstance(agent, dict):
        return " ".join(str(agent[k]) for k in ("name", "version") if agent.get(k))
    return str(agent or "")


def _manifest_history(store: dict[str, Any], label: str, depth: int = 0) -> list[str]:
    """Sentences for one manifest and, recursively, its parent ingredients' manifests."""
    manifests = store.get("manifests", {})
    m = manifests.get(label) or {}
    indent = "  " * depth
    lines = []
    for assertion in m.get("assertions", []):
        if not assertion.get("label", "").startswith("c2pa.actions"):
            continue
        for action in assertion.get("data", {}).get("actions", []):
            verb = _ACTION_WORDS.get(action.get("action", ""), action.get("action", "?"))
            params = action.get("parameters") or {}
            words = f"{indent}{verb.capitalize()}"
            models = params.get("models") or []
            agent = action.get("softwareAgent")
            # with the models listed below, the agent's name is enough (its version is a hash)
            agent = agent.get("name", "") if models and isinstance(agent, dict) else _agent_name(agent)
            if agent:
                words += f" by {agent}"
            if params.get("op"):
                words += f" (op {params['op']})"
            if models:
                words += " using " + ", ".join(f"{x['id']} (weights {x['hash'][:12]}…)" for x in models if "id" in x)
            source = action.get("digitalSourceType", "")
            if source:
                words += f" — {source.rsplit('/', 1)[-1]}"
            if params.get("prompt"):
                words += f', prompt "{params["prompt"]}"'
            lines.append(words)
    for ing in m.get("ingredients", []):
        rel = {"parentOf": "made from", "componentOf": "uses", "inputTo": "input"}.get(ing.get("relationship", ""), "uses")
        title = ing.get("title", "?")
        parent = ing.get("active_manifest")
        if parent and parent in manifests:
            lines.append(f"{indent}{rel.capitalize()} {title}, which carries its own credentials:")
            if depth < 5:
                lines += _manifest_history(store, parent, depth + 1)
        else:
            lines.append(f"{indent}{rel.capitalize()} {title}")
    return lines


def _assertion(store: dict[str, Any] | None, label: str) -> Any:
    if not store:
        return None
    m = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    return next((a.get("data") for a in m.get("assertions", []) if a.get("label") == label), None)


# ----------------------------------------------------------------------------- the rest


def _provenance_history(prov: dict[str, Any]) -> list[str]:
    lines = []
    what = f"{prov.get('label') or prov.get('source')} with strata {prov.get('strata_version', '?')}"
    if prov.get("op"):
        what += f": op {prov['op']}" + (f" at node '{prov['node_id']}'" if prov.get("node_id") else "")
    if prov.get("seed") is not None:
        what += f", seed {prov['seed']}"
    lines.append(what)
    if prov.get("prompt"):
        lines.append(f'Prompt: "{prov["prompt"]}"' + (f' (negative: "{prov["negative_prompt"]}")' if prov.get("negative_prompt") else ""))
    models = prov.get("models") or []
    if models:
        lines.append("Models: " + ", ".join(f"{m['id']} (weights sha256 {m['hash'][:12]}…)" for m in models))
    inputs = prov.get("input_assets") or []
    if inputs:
        lines.append("From input assets: " + ", ".join(a[:12] for a in inputs) + " (`strata lineage FILE` shows them)")
    workflow = prov.get("workflow")
    if isinstance(workflow, dict):
        nodes = workflow.get("nodes") or []
        lines.append(f"Workflow '{workflow.get('name', '?')}' with {len(nodes)} node(s) is embedded: `strata run FILE` reruns it")
    return lines


def _check_watermark(path: Path, kind: Kind, report: VerifyReport) -> None:
    try:
        from strata.provenance import watermark as wm
    except ImportError:  # pragma: no cover
        return
    try:
        if kind == "image":
            result = wm.read_watermark(path)
        elif kind == "video":
            result = wm.detect_video(path)
        else:
            return
    except MediaError as e:
        report.watermark = "unreadable"
        report.problems.append(f"the pixels cannot be decoded, so the watermark was not checked: {e}")
        return
    except StrataError as e:  # e.g. the watermark models are not installed
        report.watermark = "not checked"
        report.problems.append(str(e))
        return
    if result is None:
        report.watermark = "not checked"
        return
    report.watermark = "found" if result.found else "not found"
    report.watermark_asset_hint = result.asset_hint


def verify_file(path: str | os.PathLike[str], *, check_watermark: bool = True) -> VerifyReport:
    """Check a file's content credentials, embedded provenance and watermark.

    Args:
        path: the file to check.
        check_watermark: decode the pixels and look for the watermark (default True; ~1-2 s).

    Raises:
        MediaError: ``path`` does not exist or is not a file.
    """
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: no such file" if not p.exists() else f"{p} is not a file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise MediaError(f"{p}: cannot read the file ({e.strerror or e})") from e
    report = VerifyReport(path=str(p))
    report.kind, report.mime = sniff(data[:16])
    if report.kind == "unknown" or report.mime is None:
        report.credentials_detail = "not a media file"
        report.history.append("Nothing to verify: the file is not a PNG, JPEG, WebP, TIFF, WAV or MP4 file")
        return report
    store = _read_credentials(data, report.mime, report)
    if store and store.get("active_manifest"):
        report.history += _manifest_history(store, store["active_manifest"])
        note = _assertion(store, "org.strata.watermark")
        if isinstance(note, dict):
            report.history.append(f"The credentials say the content carries a {note.get('method')} watermark "
                                  f"(payload {note.get('payload')})")
    prov: dict[str, Any] | None = None
    if report.kind == "image":
        from strata.provenance.metadata import read_provenance

        try:
            found = read_provenance(p)
            prov = None if found is None else found.model_dump(mode="json")
        except MediaError as e:
            report.problems.append(f"embedded metadata: {e}")
    if prov is None:
        prov = _assertion(store, "org.strata.provenance")
    if isinstance(prov, dict):
        report.provenance = prov
        report.label = prov.get("label")
        report.history += _provenance_history(prov)
    if check_watermark:
        _check_watermark(p, report.kind, report)
    if report.watermark == "found":
        report.history.append(f"strata's invisible watermark is in the pixels (asset id starts with {report.watermark_asset_hint})")
        asset = (report.provenance or {}).get("asset_id")
        hint = report.watermark_asset_hint
        # The hint is 16 decoded bits; a bit or two can flip (RivaGAN's bit accuracy is ~97 %),
        # so only a larger Hamming distance says the pixels belong to another image.
        if asset and hint and bin(int(asset[: len(hint)], 16) ^ int(hint, 16)).count("1") > 2:
            report.problems.append(f"the watermark names asset {report.watermark_asset_hint}…, the metadata {asset[:12]}…: "
                                   "the pixels may come from another strata image")
        if report.credentials == "unsigned" and report.provenance is None:
            report.history.append("The metadata and credentials were stripped, but the watermark says strata made this")
    elif report.watermark == "not found" and report.label == "AI-generated" and report.kind == "image":
        # (video writers do not mark frames yet, so a missing mark in a video says nothing)
        report.problems.append("the metadata says AI-generated but no strata watermark was found "
                               "(watermarking was off, the image is small, or it was heavily edited)")
    if not report.history:
        report.history.append("No provenance found: no credentials, no strata metadata, no strata watermark")
    return report


__all__ = ["VerifyReport", "sniff", "verify_file"]
