"""Writing a run's outputs as user files, each carrying its provenance.

The embedded provenance is deterministic — workflow, node, params, seed, models and their
hashes, the output's asset id — and holds no timestamps or run ids, so the same workflow and
seed give the same file bytes. That also lets the encoded file be cached: an unchanged rerun
copies stored bytes instead of encoding again.

Images get strata's invisible watermark before encoding (:mod:`strata.provenance.watermark`;
``STRATA_WATERMARK=0`` turns it off). Every file is then signed with content credentials (C2PA,
:mod:`strata.provenance.credentials`; ``STRATA_SIGN=0`` turns it off). A C2PA signature is not
deterministic (c2pa salts each assertion with random bytes), so the *signed* file is cached
too, under the unsigned file's key plus the signer's certificate: within one store an unchanged
rerun gives the same signed bytes (and leaves the file alone); two fresh stores give the same
pixels and provenance but different signatures.
"""

from __future__ import annotations

from concurrent.futures import Future, wait as futures_wait
from pathlib import Path
from typing import Any

import yaml

from strata import __version__
from strata.errors import MediaError
from strata.files import atomic_write_bytes
from strata.media.image_io import EXTENSIONS as IMAGE_EXTENSIONS
from strata.parallel import shared_pool
from strata.store import Store, sha256_bytes
from strata.store.store import AssetRef
from strata.workflow.events import EventBus, OutputWritten
from strata.workflow.executor import ModelInfo, canonical_hash
from strata.workflow.validate import Plan, Source

# Image formats by extension, in the lower-case names the writers and signer use.
FORMATS = {suffix: fmt.lower() for suffix, fmt in IMAGE_EXTENSIONS.items()}
# Params that A1111-style metadata surfaces when a generative node is upstream.
GENERATION_FIELDS = {"prompt": "prompt", "negative": "negative_prompt", "steps": "steps", "sampler": "sampler",
                     "guidance": "guidance", "width": "width", "height": "height"}


def ancestors(plan: Plan, node_id: str) -> list[str]:
    """``node_id`` and every node it (transitively) depends on, in plan order."""
    wanted = {node_id}
    for pn in reversed(plan.nodes):
        if pn.node.id in wanted:
            wanted.update(s.node for s in pn.sources())
    return [pn.node.id for pn in plan.nodes if pn.node.id in wanted]


def build_provenance(plan: Plan, src: Source, asset_id: str, input_assets: list[str],
                     models: dict[str, ModelInfo | None], index: int | None = None) -> Any:
    """The provenance record embedded in the file made from ``src``'s output ``asset_id``.

    The label considers the whole lineage: a crop of a generated image is still AI-generated.
    ``index`` is the item's position in a list output: a generative batch's image i was made
    from seed + i (the convention of every generate op), and its file says so.
    """
    from strata.provenance.metadata import Provenance

    chain = ancestors(plan, src.node)
    used = [{"id": m.id, "hash": m.weights_hash} for n in chain if (m := models.get(n)) is not None]
    pn = plan.node(src.node)
    generation: dict[str, Any] = {}
    for n in chain:  # the nearest generative ancestor wins: later in plan order overrides
        if models.get(n) is not None:
            params = plan.node(n).params
            generation = {GENERATION_FIELDS[k]: params[k] for k in GENERATION_FIELDS if k in params}
    seed = pn.params.get("seed", plan.workflow.seed)
    if models.get(src.node) is not None and index is not None and "seed" in pn.params:
        seed = pn.params["seed"] + index
    if models.get(src.node) is not None:
        source = "generated"
    elif used:
        source = "ai-edited"
    else:
        source = "edited"
    return Provenance(
        source=source,
        strata_version=__version__,
        node_id=src.node,
        op=pn.spec.op,
        params=pn.params,
        seed=seed,
        models=used,
        input_assets=input_assets,
        asset_id=asset_id,
        workflow=plan.workflow.to_dict(),
        created=None,  # no timestamp: the same workflow and seed give the same file bytes
        **generation,
    )


def _write_one(store: Store, plan: Plan, src: Source, asset_id: str, input_assets: list[str], path: Path,
               models: dict[str, ModelInfo | None], index: int | None = None, *,
               cached_only: bool = False) -> tuple[Path, str] | None:
    """Write one output file; returns its path and sha256. With ``cached_only``, only when its
    encoded (and, with signing on, signed) bytes are already in the store — else None, and
    nothing is written."""
    from strata.media.image_io import encode_image

    from strata.media.writers import WRITERS, encode_file  # audio, video, subtitles

    suffix = path.suffix.lower()
    fmt = FORMATS[suffix] if suffix in FORMATS else WRITERS[suffix].format
    prov = build_provenance(plan, src, asset_id, input_assets, models, index)
    image_out = fmt in FORMATS.values()
    mark = _watermark_method() if image_out else None
    key = canonical_hash({"export": asset_id, "format": fmt, "provenance": prov.model_dump(mode="json"),
                          **({"watermark": mark} if mark else {})})
    # A cached file's blob id is the sha256 of its bytes: no need to hash them again.
    cached = store.cache_lookup(key)
    if cached is not None:
        digest = cached["file"]
        data = store.blobs.get(digest)  # type: ignore[arg-type]
    elif cached_only:
        return None
    else:
        value = store.get_value(asset_id)
        if mark:
            value = _embed_watermark(value, asset_id)
        data = encode_image(value, fmt, metadata=prov) if suffix in FORMATS else encode_file(suffix, value, prov)
        digest = store.put_file_bytes(key, data, f"file/{fmt}", write_behind=True)
    if suffix in FORMATS or WRITERS[suffix].signable:  # C2PA has no place in .srt/.vtt text
        signed = _sign(store, plan, src, key, data, digest, fmt, prov, path.name,
                       _watermark_note(data, asset_id) if mark else None, cached_only=cached_only)
        if signed is None:  # signing is slow: leave it to the pool, with the encoding
            return None
        data, digest = signed
    # Leave an identical file alone (cheap unchanged reruns; no needless mtime churn). Comparing
    # the bytes costs less than hashing the file.
    if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
        atomic_write_bytes(path, data)
    return path, digest  # type: ignore[return-value]


def _ingredient_files(plan: Plan, src: Source) -> list[Path]:
    """Files the output was made from (``io.load_image`` ancestors): signed ones bring their
    own credentials into the new manifest, so an edit chain across files stays visible."""
    files = []
    for n in ancestors(plan, src.node):
        pn = plan.node(n)
        path = pn.params.get("path") if pn.spec.op == "io.load_image" else None
        if isinstance(path, str) and Path(path).is_file() and Path(path).stat().st_size <= 256 * 2**20:
            files.append(Path(path))
    return files


def _watermark_method() -> str | None:
    from strata.provenance.watermark import METHOD, watermark_enabled

    return METHOD if watermark_enabled() else None


def _embed_watermark(value: Any, asset_id: str) -> Any:
    """The image with strata's invisible watermark (STRATA_WATERMARK=0 turns it off)."""
    from strata.media.image import Image
    from strata.provenance.watermark import embed_watermark

    return embed_watermark(value, asset_id) if isinstance(value, Image) else value


def _watermark_note(data: bytes, asset_id: str) -> dict[str, Any] | None:
    """The watermark's description for the credentials, if the encoded image was large enough to carry it."""
    import io

    import PIL.Image

    from strata.provenance.watermark import MIN_SIDE, describe

    with PIL.Image.open(io.BytesIO(data)) as im:  # reads the header only
        return describe(asset_id) if min(im.size) >= MIN_SIDE else None


def _sign(store: Store, plan: Plan, src: Source, key: str, data: bytes, digest: str, fmt: str, prov: Any, title: str,
          watermark: dict[str, Any] | None = None, *, cached_only: bool = False) -> tuple[bytes, str] | None:
    """``data`` (whose sha256 is ``digest``) with signed content credentials (cached per signer),
    or as it is when signing is off; with the sha256 of what is returned. With ``cached_only``,
    None when the signed bytes are not stored yet."""
    from strata.provenance.credentials import Ingredient, MIME_TYPES, load_identity, sign_file_bytes, signing_enabled

    if not signing_enabled():
        return data, digest
    identity = load_identity()
    files = _ingredient_files(plan, src)
    blobs = [f.read_bytes() for f in files]
    signed_key = canonical_hash({"signed": key, "by": identity.fingerprint, "title": title,
                                 "ingredients": [sha256_bytes(b) for b in blobs]})
    cached = store.cache_lookup(signed_key)
    if cached is not None:
        return store.blobs.get(cached["file"]), cached["file"]  # type: ignore[arg-type,return-value]
    if cached_only:
        return None
    relationship = "parentOf" if len(files) == 1 else "componentOf"
    ingredients = []
    for f, b in zip(files, blobs):
        mime = MIME_TYPES.get(FORMATS.get(f.suffix.lower(), ""), "")
        if mime:
            ingredients.append(Ingredient(b, mime, f.name, relationship))  # type: ignore[arg-type]
    try:
        signed = sign_file_bytes(data, fmt, prov, identity=identity, title=title, ingredients=ingredients,
                                 watermark=watermark)
    except MediaError:
        if not ingredients:
            raise
        # an input file c2pa cannot parse: its id is still recorded as an asset ingredient
        signed = sign_file_bytes(data, fmt, prov, identity=identity, title=title, watermark=watermark)
    return signed, store.put_file_bytes(signed_key, signed, f"file/{fmt}+c2pa")


class _File:
    """One output file: its job, then its result (``(path, sha256)``), a Future of it, or an error."""

    __slots__ = ("job", "done", "recorded")

    def __init__(self, job: tuple[Source, str, list[str], Path, int | None]):
        self.job, self.done, self.recorded = job, None, False

    def settled(self) -> bool:
        return self.done is not None and (not isinstance(self.done, Future) or self.done.done())

    def result(self) -> tuple[Path, str]:
        return self.done.result() if isinstance(self.done, Future) else self.done  # type: ignore[union-attr,return-value]


class OutputWriter:
    """Writes a run's ``outputs:`` files while the run goes on: each file as soon as its node
    has finished (executed or cached), not after the last node.

    Encoding, watermarking and signing a file (a watermarked poster PNG: ~0.5 s) then overlap
    the nodes still running — most of them leave a core idle (a mix, a speech line) — instead
    of adding to the end of the run. Files whose encoded bytes are stored already (an unchanged
    rerun) are copied in the calling thread: cheaper than a hand-off to a pool thread. The
    others go to the shared ``files`` pool. Each file is written atomically. The store's
    history (exports) and the ``output_written`` events are recorded on the calling thread by
    :meth:`finish` (in the declared order) or :meth:`abandon`. List outputs become
    ``name_0.png``, ``name_1.png``, ...

    A run stopped part-way (Ctrl-C, cancel, a crash) may thus leave the files of the nodes
    that finished before it stopped; they are complete and recorded like any other.
    """

    def __init__(self, plan: Plan, models: dict[str, ModelInfo | None], store: Store, out_dir: Path, run_id: str,
                 bus: EventBus | None = None):
        self.plan, self.models, self.store, self.out_dir, self.run_id, self.bus = plan, models, store, out_dir, run_id, bus
        self._by_node: dict[str, list[str]] = {}
        for filename, src in plan.outputs.items():
            self._by_node.setdefault(src.node, []).append(filename)
        self._files: dict[str, list[_File]] = {}  # output name → its files, in order
        self._made_dir = False  # out_dir is made with the first file (a run whose nodes all fail makes none)

    def node_done(self, node_id: str, refs: dict[str, dict[str, AssetRef]], *, executed: bool = False) -> None:
        """Start writing the files of ``node_id``'s outputs (its value and its inputs' are in ``refs``).

        ``executed``: the node ran in this run (it was not a cache hit), so its files are new
        in all likelihood: they go to the pool at once, without first looking for stored bytes
        on this thread (the pool job still finds them if the value was made before).
        """
        for filename in self._by_node.get(node_id, ()):
            src = self.plan.outputs[filename]
            ref = refs[src.node][src.output]
            name = Path(filename)
            items = ref if isinstance(ref, list) else [ref]
            paths = [self.out_dir / filename] if not isinstance(ref, list) else [
                self.out_dir / f"{name.stem}_{i}{name.suffix}" for i in range(len(items))]
            input_assets = [a for s in self.plan.node(src.node).sources() for r in [refs[s.node][s.output]]
                            for a in (r if isinstance(r, list) else [r])]
            files = self._files[filename] = []
            for i, (asset_id, path) in enumerate(zip(items, paths)):
                file = _File((src, asset_id, input_assets, path, i if isinstance(ref, list) else None))
                files.append(file)  # known before any work starts: abandon() then sees it whatever happens
                pool = shared_pool("files")
                try:
                    if not self._made_dir:
                        self.out_dir.mkdir(parents=True, exist_ok=True)
                        self._made_dir = True
                    done = None if executed else self._write(file.job, cached_only=True)
                    if done is None:
                        done = pool.submit(self._write, file.job) if pool is not None else self._write(file.job)
                except Exception as exc:  # noqa: BLE001 - reported by finish(), after the nodes still to run
                    done = Future()
                    done.set_exception(exc)
                file.done = done

    def _write(self, job: tuple[Source, str, list[str], Path, int | None], cached_only: bool = False) -> Any:
        src, asset_id, input_assets, path, index = job
        return _write_one(self.store, self.plan, src, asset_id, input_assets, path, self.models, index,
                          cached_only=cached_only)

    def _all(self) -> list[_File]:
        return [f for filename in self.plan.outputs for f in self._files.get(filename, ())]  # the declared order

    def _record(self) -> tuple[dict[str, list[Path]], BaseException | None]:
        """Record every settled, not yet recorded file; returns the written paths by output name
        and the first error of a file that failed."""
        error: BaseException | None = None
        written: dict[str, list[Path]] = {}
        exports: list[tuple[str, str, str, str, str, str]] = []
        events: list[OutputWritten] = []
        newly: list[_File] = []
        for filename in self.plan.outputs:
            for file in self._files.get(filename, ()):
                if not file.settled():
                    continue
                try:
                    path, digest = file.result()
                except Exception as exc:  # noqa: BLE001 - the first one is raised by the caller
                    error = error or exc
                    continue
                written.setdefault(filename, []).append(path)
                if file.recorded:
                    continue
                src, asset_id = file.job[0], file.job[1]
                exports.append((str(path.resolve()), digest, asset_id, self.run_id, src.node, src.output))
                events.append(OutputWritten(self.run_id, str(path), src.node, src.output))
                newly.append(file)
        if exports:
            self.store.db.add_exports(exports)  # one commit for all of them
            for file in newly:
                file.recorded = True
        if self.bus is not None:
            for event in events:
                self.bus.emit(event)
        return written, error

    def finish(self) -> dict[str, list[Path]]:
        """Wait for every file, record them in the history and emit their events; returns
        output name → written paths (outputs whose node failed or was skipped are absent).

        Raises:
            the first file's error (OSError when it could not be written, MediaError, ...),
            once every other file has finished and been recorded.
        """
        futures_wait([f.done for f in self._all() if isinstance(f.done, Future)])
        written, error = self._record()
        if error is not None:
            raise error
        return written

    def abandon(self) -> None:
        """The run stopped (Ctrl-C, cancel, an error): files not started are dropped, those being
        written are waited for, and every file written is recorded. A second Ctrl-C stops the wait
        (what is still being written finishes in the background, atomically, unrecorded)."""
        for file in self._all():
            if isinstance(file.done, Future):
                file.done.cancel()
        try:
            futures_wait([f.done for f in self._all() if isinstance(f.done, Future)])
        except KeyboardInterrupt:
            pass
        self._record()


def write_outputs(plan: Plan, refs: dict[str, dict[str, AssetRef]], models: dict[str, ModelInfo | None], store: Store,
                  out_dir: Path, run_id: str, bus: EventBus | None = None) -> dict[str, list[Path]]:
    """Write the ``outputs:`` of finished nodes (``refs``) at once: :class:`OutputWriter` for
    values that are all there already (``strata export``)."""
    writer = OutputWriter(plan, models, store, out_dir, run_id, bus)
    for pn in plan.nodes:
        if pn.node.id in refs:
            writer.node_done(pn.node.id, refs)
    return writer.finish()


def export_run(store: Store, run: str, dest: str | Path) -> list[Path]:
    """Write a recorded run's outputs and its ``workflow.yaml`` into ``dest``."""
    from strata.models.registry import default_registry
    from strata.store.history import resolve_run, run_nodes, run_workflow_dict
    from strata.workflow.spec import parse_workflow
    from strata.workflow.validate import validate

    run_id = resolve_run(store, run)
    plan = validate(parse_workflow(run_workflow_dict(store, run_id)))
    refs: dict[str, dict[str, AssetRef]] = {}
    for rec in run_nodes(store, run_id):
        out_types = {o.name: o for o in plan.node(rec.node_id).spec.outputs}
        refs[rec.node_id] = {
            k: (v if "list" in out_types[k].type_name else v[0]) for k, v in rec.outputs.items() if k in out_types
        }
    registry = default_registry()
    models: dict[str, ModelInfo | None] = {
        pn.node.id: registry.identify(pn.spec.model_capability, pn.params) if pn.spec.model_capability else None
        for pn in plan.nodes
    }
    dest = Path(dest)
    written = write_outputs(plan, refs, models, store, dest, run_id)
    store.flush()  # the export cache entries written behind
    wf_path = dest / "workflow.yaml"
    atomic_write_bytes(wf_path, yaml.safe_dump(plan.workflow.to_dict(), sort_keys=False).encode())
    return [p for ps in written.values() for p in ps] + [wf_path]
