"""User-file writers for non-image values, by file extension (the workflow's ``outputs:``).

Each writer turns a stored value and its :class:`~strata.provenance.metadata.Provenance`
into file bytes, deterministically (no timestamps), with the provenance embedded where the
format has a place for it:

======  ==========  ==============================================================
ext     value       where the provenance goes
======  ==========  ==============================================================
.wav    Audio       a ``strt`` RIFF chunk = provenance JSON (with the workflow);
                    RIFF INFO: ICMT (comment) = the one-line summary, ISFT = "strata X"
.mp4    Video       container metadata: ``comment`` = provenance JSON,
                    ``description`` = the human-readable summary and label
.vtt    Subtitles   a ``NOTE`` block after the header (players ignore it)
.mid    Midi        a text meta event (FF 01) at the start of the first track
.srt    Subtitles   nowhere: SubRip has no metadata or comments
======  ==========  ==============================================================

Images keep their own path (:func:`strata.media.image_io.encode_image`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from strata.errors import MediaError


@dataclass(frozen=True)
class FileWriter:
    """How one kind of file is written: its format name, MIME type, value type and encoder."""

    format: str
    mime: str
    value_type: str  # class name, so importing this module does not import the media stack
    encode: Callable[[Any, Any], bytes]
    signable: bool = True  # C2PA can embed content credentials in this format


def _provenance_json(prov: Any) -> str:
    return json.dumps(prov.model_dump(mode="json", exclude_none=True), sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))


def _wav(value: Any, prov: Any) -> bytes:
    from strata.media.audio import add_riff_chunk, encode_wav

    # libsndfile drops INFO strings over ~2 KB, so the full record goes in a chunk of its own
    # (RIFF readers skip chunks they do not know).
    data = encode_wav(value, bits=16, comment=prov.description(), software=f"strata {prov.strata_version}")
    return add_riff_chunk(data, WAV_PROVENANCE_CHUNK, _provenance_json(prov).encode("utf-8"))


def _mp4(value: Any, prov: Any) -> bytes:
    from strata.media.mp4 import remux_with_metadata

    return remux_with_metadata(value.data, {"comment": _provenance_json(prov),
                                            "description": prov.description()})


def _srt(value: Any, prov: Any) -> bytes:
    del prov  # SubRip has no place for metadata
    return value.to_srt().encode("utf-8")


def _vtt(value: Any, prov: Any) -> bytes:
    text = value.to_vtt()
    # WebVTT NOTE blocks may not contain "-->"; JSON never needs it unescaped
    note = "NOTE strata provenance " + _provenance_json(prov).replace("-->", "--\\u003e") + "\n\n"
    header, _, body = text.partition("\n\n")
    return (header + "\n\n" + note + body).encode("utf-8")


def _mid(value: Any, prov: Any) -> bytes:
    import io

    import mido

    smf = mido.MidiFile(file=io.BytesIO(value.data))
    smf.tracks[0].insert(0, mido.MetaMessage("text", text="strata provenance " + _provenance_json(prov), time=0))
    buf = io.BytesIO()
    smf.save(file=buf)
    return buf.getvalue()


WAV_PROVENANCE_CHUNK = b"strt"

WRITERS: dict[str, FileWriter] = {
    ".wav": FileWriter("wav", "audio/wav", "Audio", _wav),
    ".mp4": FileWriter("mp4", "video/mp4", "Video", _mp4),
    ".mid": FileWriter("mid", "audio/midi", "Midi", _mid, signable=False),
    ".srt": FileWriter("srt", "application/x-subrip", "Subtitles", _srt, signable=False),
    ".vtt": FileWriter("vtt", "text/vtt", "Subtitles", _vtt, signable=False),
}


def encode_file(suffix: str, value: Any, prov: Any) -> bytes:
    """File bytes of ``value`` for a file ending in ``suffix``, provenance embedded.

    Raises:
        MediaError: no writer for ``suffix``, or the value is of the wrong type.
    """
    writer = WRITERS.get(suffix.lower())
    if writer is None:
        raise MediaError(f"no writer for {suffix!r} files; known: {', '.join(sorted(WRITERS))}")
    if type(value).__name__ != writer.value_type:
        raise MediaError(f"a {suffix} file holds {writer.value_type}, but the node's output is "
                         f"{type(value).__name__}; connect a node that makes {writer.value_type}")
    return writer.encode(value, prov)


__all__ = ["FileWriter", "WRITERS", "encode_file"]
