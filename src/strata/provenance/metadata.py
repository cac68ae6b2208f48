"""Provenance embedded in the image files strata writes, and reading it back.

A :class:`Provenance` records what made an image: strata's version, an "AI-generated" /
"edited with strata" label, the workflow, the node and op with its params, the seed, the
models (ids and weight hashes), the run and the input assets, and for generative nodes the
prompt, negative prompt, steps, sampler, guidance and size.

Layout in files (written by :func:`strata.media.image_io.encode_image`):

PNG (text chunks before the pixel data)
    ``strata:label``       iTXt  "AI-generated" or "edited with strata"
    ``strata:provenance``  iTXt  the Provenance as JSON, without the workflow
    ``strata:workflow``    iTXt  (zlib-compressed) the workflow as JSON, when there is one
    ``parameters``         tEXt/iTXt  AUTOMATIC1111-style text, when there is a prompt
                           (A1111's PNG Info, InvokeAI, civitai and others show it)
    ``Description``, ``Software``  iTXt  human-readable summary and "strata VERSION"
    ``XML:com.adobe.xmp``  iTXt  an XMP packet with the label and IPTC digital source type
JPEG, WebP
    XMP packet (APP1 / XMP chunk): ``Iptc4xmpExt:DigitalSourceType`` (IPTC URI), ``dc:description``,
    ``xmp:CreatorTool``, ``xmp:CreateDate`` and, in the strata namespace
    (:data:`STRATA_XMP_NS`), ``strata:label``, ``strata:provenance`` (JSON), ``strata:workflow`` (JSON);
    EXIF Software and ImageDescription, and the A1111 text as EXIF UserComment (where A1111 puts it).
TIFF
    the same XMP packet in tag 700; ImageDescription (270) holds an ASCII summary; Software (305).

The label follows :attr:`Provenance.source`: a generative model made or changed the pixels →
"AI-generated" (IPTC ``trainedAlgorithmicMedia`` / ``compositeWithTrainedAlgorithmicMedia``);
only non-generative edits → "edited with strata" (IPTC ``humanEdits``). Whoever builds the
Provenance (the engine) must consider the whole lineage: a crop of a generated image is still
"generated".
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

import PIL.Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field, model_validator

import strata
from strata.errors import MediaError
from strata.media.image_io import probe_image

Label = Literal["AI-generated", "edited with strata"]
Source = Literal["generated", "ai-edited", "edited"]

IPTC_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/"
DIGITAL_SOURCE_TYPES: dict[str, str] = {
    # a generative model made the whole image (text-to-image)
    "generated": IPTC_SOURCE_TYPE + "trainedAlgorithmicMedia",
    # existing media changed by, or combined with, generative output (img2img, inpaint, ...)
    "ai-edited": IPTC_SOURCE_TYPE + "compositeWithTrainedAlgorithmicMedia",
    # edited by a person with non-generative tools (crop, grade, composite, text, ...)
    "edited": IPTC_SOURCE_TYPE + "humanEdits",
}

STRATA_XMP_NS = "https://strata.dev/ns/provenance/1.0/"
_NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "strata": STRATA_XMP_NS,
}
PNG_KEYS = ("strata:label", "strata:provenance", "strata:workflow")


def _canonical_json(value: Any) -> str:
    """Sorted keys and fixed separators: the same provenance always gives the same bytes."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class ModelRef(BaseModel):
    """A model used to make an image.

    Attributes:
        id: the registry id of the model (e.g. ``"strata/t2i-tiny"``).
        hash: sha256 hex digest of its weights file(s).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    hash: str


class Provenance(BaseModel):
    """What made an image; embedded in every file strata writes for a user.

    Attributes:
        source: what made the pixels — ``"generated"`` (a generative model made the whole
            image), ``"ai-edited"`` (media changed by or combined with generative output) or
            ``"edited"`` (non-generative ops only). Required: the caller must decide.
        label: derived from ``source``: "AI-generated" or "edited with strata".
        digital_source_type: derived from ``source``: the IPTC digital source type URI.
        strata_version: version of strata that wrote the file (default: this one).
        created: when the image was made (default: now, UTC; None leaves it out).
        asset_id: content id of this image's value in the store (``strata lineage FILE``).
        run_id, node_id, op: the run, the node in the workflow and its op id.
        params: the node's params (JSON values).
        seed: the seed the node used, if any.
        models: models used (id and weights hash), generative model first.
        input_assets: content ids of the node's input assets.
        workflow: the whole workflow (as its JSON/YAML dict), so the file can be re-run.
        prompt, negative_prompt, steps, sampler, guidance, width, height: generation settings
            of generative nodes (guidance = classifier-free guidance scale).
    """

    # forbid: a misspelt field must fail where the record is built, not vanish from the file.
    # Reading files drops unknown keys first (see _provenance_from), so newer files still load.
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    source: Source
    strata_version: str = Field(default_factory=lambda: strata.__version__)
    # A timestamp makes two otherwise identical runs write different bytes; pass created=None
    # where byte-identical files matter more than the date.
    created: datetime | None = Field(default_factory=lambda: datetime.now(timezone.utc).replace(microsecond=0))
    asset_id: str | None = None
    run_id: str | None = None
    node_id: str | None = None
    op: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    models: list[ModelRef] = Field(default_factory=list)
    input_assets: list[str] = Field(default_factory=list)
    workflow: dict[str, Any] | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    steps: int | None = None
    sampler: str | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None

    @model_validator(mode="after")
    def _prompt_means_generated(self) -> "Provenance":
        if self.prompt is not None and self.source == "edited":
            raise ValueError("a prompt means a generative model made the pixels: source must be 'generated' or 'ai-edited'")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label(self) -> Label:
        return "edited with strata" if self.source == "edited" else "AI-generated"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def digital_source_type(self) -> str:
        return DIGITAL_SOURCE_TYPES[self.source]

    # -- serializations ---------------------------------------------------------------

    def provenance_json(self) -> str:
        """Canonical JSON of everything except the workflow (which is stored on its own)."""
        return _canonical_json(self.model_dump(mode="json", exclude={"workflow"}))

    def workflow_json(self) -> str | None:
        return None if self.workflow is None else _canonical_json(self.workflow)

    def description(self) -> str:
        """One human-readable line: label, strata version and the prompt if any."""
        head = ("AI-generated" if self.label == "AI-generated" else "Edited") + f" with strata {self.strata_version}"
        return head + (f" from the prompt: {self.prompt}" if self.prompt else "")

    def ascii_summary(self) -> str:
        """An ASCII-only summary for fields that allow nothing else (TIFF ImageDescription, EXIF)."""
        parts = [f"{self.label} (strata {self.strata_version})"]
        if self.op:
            parts.append(f"op {self.op}")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        text = "; ".join(parts) + "; provenance in XMP"
        return text.encode("ascii", "backslashreplace").decode("ascii")

    def a1111_parameters(self) -> str | None:
        """The AUTOMATIC1111 "parameters" text, or None when there is no prompt.

        Format (as A1111 writes it; the negative line only when there is one, fields only
        when known, values containing ``,`` ``:`` or a newline JSON-quoted)::

            PROMPT
            Negative prompt: NEGATIVE
            Steps: N, Sampler: X, CFG scale: G, Seed: S, Size: WxH, Model hash: H, Model: NAME
        """
        if self.prompt is None:
            return None
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        model = self.models[0] if self.models else None
        fields = {
            "Steps": self.steps,
            "Sampler": self.sampler,
            "CFG scale": None if self.guidance is None else f"{self.guidance:g}",
            "Seed": self.seed,
            "Size": f"{self.width}x{self.height}" if self.width and self.height else None,
            "Model hash": model.hash[:10] if model else None,  # A1111's short sha256
            "Model": model.id if model else None,
        }
        known = [f"{k}: {_a1111_quote(str(v))}" for k, v in fields.items() if v is not None]
        if known:
            lines.append(", ".join(known))
        return "\n".join(lines)

    def png_text(self) -> list[tuple[str, str, bool]]:
        """PNG text chunks as (key, text, compress)."""
        chunks = [
            ("strata:label", self.label, False),
            ("strata:provenance", self.provenance_json(), False),
        ]
        workflow = self.workflow_json()
        if workflow is not None:
            chunks.append(("strata:workflow", workflow, True))
        parameters = self.a1111_parameters()
        if parameters is not None:
            chunks.append(("parameters", parameters, False))
        chunks += [
            ("Description", self.description(), False),
            ("Software", f"strata {self.strata_version}", False),
            # The XMP standard says iTXt "XML:com.adobe.xmp", uncompressed. The JSON is already
            # in the strata chunks above, so this packet carries only the labels.
            ("XML:com.adobe.xmp", self.xmp_packet(include_json=False).decode("utf-8"), False),
        ]
        return chunks

    def xmp_packet(self, *, include_json: bool = True) -> bytes:
        """A complete XMP packet (UTF-8): IPTC digital source type, dc:description, the label,
        and (``include_json``, default True) the provenance and workflow JSON."""
        props = [
            f"<Iptc4xmpExt:DigitalSourceType>{escape(self.digital_source_type)}</Iptc4xmpExt:DigitalSourceType>",
            f"<xmp:CreatorTool>strata {escape(self.strata_version)}</xmp:CreatorTool>",
            "<dc:description><rdf:Alt><rdf:li xml:lang=\"x-default\">"
            f"{escape(self.description())}</rdf:li></rdf:Alt></dc:description>",
            f"<strata:label>{escape(self.label)}</strata:label>",
        ]
        if self.created is not None:
            props.insert(2, f"<xmp:CreateDate>{self.created.isoformat()}</xmp:CreateDate>")
        if include_json:
            props.append(f"<strata:provenance>{escape(self.provenance_json())}</strata:provenance>")
            workflow = self.workflow_json()
            if workflow is not None:
                props.append(f"<strata:workflow>{escape(workflow)}</strata:workflow>")
        xmlns = " ".join(f"xmlns:{k}={quoteattr(v)}" for k, v in _NS.items() if k not in ("x", "rdf"))
        packet = (
            '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
            f'<x:xmpmeta xmlns:x="{_NS["x"]}">\n'
            f' <rdf:RDF xmlns:rdf="{_NS["rdf"]}">\n'
            f'  <rdf:Description rdf:about="" {xmlns}>\n   '
            + "\n   ".join(props)
            + "\n  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n"
            '<?xpacket end="w"?>'
        )
        return packet.encode("utf-8")

    def exif_bytes(self) -> bytes:
        """EXIF for JPEG/WebP: Software, ImageDescription and (with a prompt) the A1111 text
        as UserComment, which is where A1111 and its readers look in JPEG/WebP files."""
        exif = PIL.Image.Exif()
        exif[0x0131] = f"strata {self.strata_version}"  # Software
        exif[0x010E] = self.ascii_summary()  # ImageDescription (ASCII only)
        parameters = self.a1111_parameters()
        if parameters is not None:
            # UserComment in the Exif IFD: 8-byte charset id, then UTF-16BE (as piexif writes it).
            exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + parameters.encode("utf-16-be")
        return exif.tobytes()


def _a1111_quote(text: str) -> str:
    # A1111's modules/infotext_utils.quote: JSON-quote values that would break the "k: v, " list.
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


_A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def parse_a1111_parameters(text: str) -> dict[str, str]:
    """Parse AUTOMATIC1111 "parameters" text (the same rules as A1111's own parser).

    Returns ``{"Prompt": ..., "Negative prompt": ..., "Steps": "20", ...}``; values are strings.
    """
    *lines, last = text.strip().split("\n")
    if len(_A1111_PARAM.findall(last)) < 3:  # A1111's rule: fewer than 3 fields → part of the prompt
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            negative.append(line[len("Negative prompt:"):].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    result = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _A1111_PARAM.findall(last):
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        result[key.strip()] = value
    return result


# ----------------------------------------------------------------------------- reading


def _parse_xmp(xmp: bytes | str, path: os.PathLike[str] | str) -> dict[str, str]:
    """The strata/IPTC fields of an XMP packet: label, digital_source_type, description,
    provenance, workflow (those present). Damaged XMP that claims to be strata's → MediaError."""
    data = xmp.encode("utf-8") if isinstance(xmp, str) else bytes(xmp)
    ours = STRATA_XMP_NS.encode() in data
    # XMP never has a DTD; refusing one rules out entity tricks in hostile files.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        root = None
    else:
        try:
            root = ET.fromstring(data.strip(b"\x00 \t\r\n"))
        except ET.ParseError:
            root = None
    if root is None:
        if ours:
            raise MediaError(f"{path}: the strata XMP metadata is damaged (not valid XML); the provenance cannot be read")
        return {}
    fields: dict[str, str] = {}
    wanted = {
        "label": f"{{{STRATA_XMP_NS}}}label",
        "provenance": f"{{{STRATA_XMP_NS}}}provenance",
        "workflow": f"{{{STRATA_XMP_NS}}}workflow",
        "digital_source_type": f"{{{_NS['Iptc4xmpExt']}}}DigitalSourceType",
    }
    for desc in root.iter(f"{{{_NS['rdf']}}}Description"):
        for name, tag in wanted.items():
            element = desc.find(tag)
            value = element.text if element is not None else desc.get(tag)  # element or attribute form
            if value is not None:
                fields[name] = value
        li = desc.find(f"{{{_NS['dc']}}}description/{{{_NS['rdf']}}}Alt/{{{_NS['rdf']}}}li")
        if li is not None and li.text:
            fields["description"] = li.text
    return fields


def _strata_fields(metadata: dict[str, Any], path: os.PathLike[str] | str) -> dict[str, str]:
    """Provenance/workflow JSON and labels from a file's metadata (PNG chunks, else XMP)."""
    xmp = metadata.get("xmp") or metadata.get("XML:com.adobe.xmp")
    fields = _parse_xmp(xmp, path) if xmp else {}
    if "strata:provenance" in metadata:
        fields["provenance"] = metadata["strata:provenance"]
        if "strata:workflow" in metadata:
            fields["workflow"] = metadata["strata:workflow"]
        if "strata:label" in metadata:
            fields["label"] = metadata["strata:label"]
    return fields


def _provenance_from(fields: dict[str, str], path: os.PathLike[str] | str) -> Provenance | None:
    if "provenance" not in fields:
        return None
    try:
        stored = json.loads(fields["provenance"])
        # Keep known fields only: computed ones (label, ...) and those of newer strata versions go.
        data = {k: v for k, v in stored.items() if k in Provenance.model_fields}
        if "workflow" in fields:
            data["workflow"] = json.loads(fields["workflow"])
        return Provenance.model_validate(data)
    except (json.JSONDecodeError, ValidationError, TypeError, AttributeError) as e:
        raise MediaError(f"{path}: the strata provenance metadata is damaged ({type(e).__name__}: {e}); it cannot be read") from e


def read_provenance(path: str | os.PathLike[str]) -> Provenance | None:
    """The provenance strata embedded in an image file, or None if it has none.

    Reads only the header and metadata (no pixel decoding).

    Args:
        path: a PNG, JPEG, WebP or TIFF file.

    Raises:
        MediaError: missing, unsupported or corrupt file, or damaged strata metadata.
    """
    info = probe_image(path)
    return _provenance_from(_strata_fields(info.metadata, info.path), info.path)


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything ``strata info FILE`` prints, as a JSON-serializable dict.

    Keys: path, format, width, height, mode, bit_depth, has_alpha, orientation, file_size,
    provenance ("strata", "a1111" or None), label, digital_source_type, description, and —
    from strata provenance when present — strata_version, created, asset_id, run_id, node_id, op,
    params, seed, models, input_assets, prompt, negative_prompt, steps, sampler, guidance,
    size, has_workflow; ``a1111`` holds parsed A1111 parameters when the file has them.

    Raises:
        MediaError: as :func:`read_provenance`.
    """
    info = probe_image(path)
    fields = _strata_fields(info.metadata, info.path)
    prov = _provenance_from(fields, info.path)
    out: dict[str, Any] = {
        "path": str(info.path),
        "format": info.format,
        "width": info.width,
        "height": info.height,
        "mode": info.mode,
        "bit_depth": info.bit_depth,
        "has_alpha": info.has_alpha,
        "orientation": info.orientation,
        "file_size": info.file_size,
        "provenance": None,
        "label": fields.get("label"),
        "digital_source_type": fields.get("digital_source_type"),
        "description": fields.get("description") or info.metadata.get("Description"),
    }
    parameters = info.metadata.get("parameters")
    if isinstance(parameters, str):
        out["provenance"] = "a1111"
        out["a1111"] = parse_a1111_parameters(parameters)
    if prov is not None:
        dumped = prov.model_dump(mode="json", exclude={"workflow", "schema_version", "width", "height"})
        out.update(dumped)
        out["provenance"] = "strata"
        out["size"] = f"{prov.width}x{prov.height}" if prov.width and prov.height else None
        out["has_workflow"] = prov.workflow is not None
    return out


__all__ = [
    "DIGITAL_SOURCE_TYPES",
    "Label",
    "ModelRef",
    "PNG_KEYS",
    "Provenance",
    "STRATA_XMP_NS",
    "Source",
    "describe",
    "parse_a1111_parameters",
    "read_provenance",
]
