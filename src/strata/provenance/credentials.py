"""Content credentials (C2PA): a local signing identity, and signing the files strata writes.

Every file strata writes for a user carries a C2PA manifest signed with the user's identity
(:func:`sign_file_bytes`). The manifest records

* actions — ``c2pa.created`` (or ``c2pa.opened`` when the parent is a file given as an
  ingredient) with the IPTC digital source type, then the op's own action (``c2pa.edited``,
  ``c2pa.color_adjustments``, ``c2pa.resized``, ...); the generative model's id and weights
  hash are the ``softwareAgent`` of the generating action;
* ingredients — the input assets (store ids, ``componentOf``), and input *files* given as
  :class:`Ingredient` (``parentOf``): when such a file is itself signed, its manifest becomes
  part of the new file's manifest store, so the edit chain is visible;
* ``org.strata.provenance`` — the whole :class:`~strata.provenance.metadata.Provenance` (with
  the workflow), which matters for audio and video where no other metadata carries it;
* ``org.strata.watermark`` — the invisible watermark's method and payload, when one was embedded.

The identity
------------
c2pa refuses a self-signed leaf certificate, so on first use strata makes a small local CA:
an EC P-256 root (``root.pem`` + ``root.key``) and an EC P-256 leaf with the digitalSignature
key usage and the emailProtection extended key usage (``signer.pem`` = leaf + root,
``signer.key``), in ``$STRATA_CONFIG/identity`` (default ``~/.config/strata/identity``, or
``$XDG_CONFIG_HOME/strata/identity``). Keys are written with mode 0600, the folder 0700.
Files signed this way read back "Trusted" only where the root is a trust anchor (``strata
verify`` adds it); anywhere else they are valid but untrusted.

Bring your own certificate: ``STRATA_SIGN_CERT`` (a PEM chain, leaf first) and
``STRATA_SIGN_KEY`` (its PEM private key; EC P-256/384/521, Ed25519 or RSA-PSS), or pass
``cert=``/``key=`` to :func:`load_identity`. ``STRATA_SIGN=0`` turns signing off (faster
writes; the files then carry only the embedded metadata and the watermark).

Signing is offline: no timestamp authority is contacted, so the signature's validity rests on
the certificate's validity period.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal

from strata.errors import MediaError, StrataError

if TYPE_CHECKING:
    from strata.provenance.metadata import Provenance

ENV_CONFIG = "STRATA_CONFIG"
ENV_SIGN = "STRATA_SIGN"
ENV_CERT = "STRATA_SIGN_CERT"
ENV_KEY = "STRATA_SIGN_KEY"

#: The MIME types strata signs, by the short format names its writers use.
MIME_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "tiff": "image/tiff",
    "wav": "audio/wav",
    "mp4": "video/mp4",
}

# What each op does to its input, in C2PA's action vocabulary (C2PA 2.x, "Actions").
_OP_ACTIONS: dict[str, str] = {
    "edit.crop": "c2pa.cropped",
    "edit.resize": "c2pa.resized",
    "edit.rotate": "c2pa.orientation",
    "edit.flip": "c2pa.orientation",
    "edit.pad": "c2pa.resized",
    "enhance.upscale_lanczos": "c2pa.resized",
    "enhance.exposure": "c2pa.color_adjustments",
    "enhance.contrast": "c2pa.color_adjustments",
    "enhance.saturation": "c2pa.color_adjustments",
    "enhance.white_balance": "c2pa.color_adjustments",
    "enhance.curves": "c2pa.color_adjustments",
    "enhance.lut": "c2pa.color_adjustments",
    "enhance.sharpen": "c2pa.filtered",
    "enhance.denoise": "c2pa.filtered",
    "composite.blend": "c2pa.placed",
    "composite.layers": "c2pa.placed",
    "composite.drop_shadow": "c2pa.edited",
    "composite.text": "c2pa.edited",
    "sound.mix": "c2pa.edited",
}


class CredentialsError(StrataError):
    """Content credentials could not be made: a bad certificate or key, or signing failed."""


# ----------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class SigningIdentity:
    """A certificate chain and private key that sign manifests.

    Attributes:
        cert_chain_pem: PEM certificates, the signing (leaf) certificate first.
        key_pem: the leaf's PEM private key.
        trust_anchor_pem: the PEM root that makes these signatures "Trusted" when given to a
            reader as a trust anchor (strata's local root), or None for a user's own chain.
        alg: the C2PA signing algorithm name for the key ("es256", "es384", "es512", "ps256"
            or "ed25519").
        directory: where the identity is stored, or None if it came from elsewhere.
    """

    cert_chain_pem: bytes
    key_pem: bytes
    trust_anchor_pem: bytes | None
    alg: str
    directory: Path | None = None

    @property
    def fingerprint(self) -> str:
        """sha256 hex of the leaf certificate (DER): names this identity in cache keys."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        leaf = x509.load_pem_x509_certificates(self.cert_chain_pem)[0]
        return hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()


def config_dir() -> Path:
    """strata's per-user config folder: ``$STRATA_CONFIG``, else ``$XDG_CONFIG_HOME/strata``,
    else ``~/.config/strata``."""
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "strata"


def identity_dir() -> Path:
    """Where strata's local signing identity lives (``config_dir() / "identity"``)."""
    return config_dir() / "identity"


def signing_enabled() -> bool:
    """False when ``STRATA_SIGN`` is set to 0/false/no/off; signing is on by default."""
    return os.environ.get(ENV_SIGN, "1").strip().lower() not in ("0", "false", "no", "off")


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "strata (local)"),
    ])


def _key_usage(*, sign: bool) -> Any:
    from cryptography import x509

    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=not sign, crl_sign=not sign,
                         encipher_only=False, decipher_only=False)


def make_identity_pems(*, common_name: str = "strata local signer", valid_days: int = 3650) -> dict[str, bytes]:
    """Make a new local CA and signing certificate, in memory.

    Args:
        common_name: the leaf certificate's common name (shown by verifiers as the signer).
        valid_days: validity of both certificates, from yesterday (default 10 years).

    Returns:
        ``{"root.pem", "root.key", "signer.pem" (leaf + root), "signer.key"}`` → PEM bytes.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = dt.datetime.now(dt.timezone.utc)
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=valid_days)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name("strata local root CA")
    root = (
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(root_name)
        .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True), critical=True)
        # c2pa accepts signing certificates with the emailProtection (or documentSigning) EKU.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM

    def key_pem(k: Any) -> bytes:
        return k.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    return {
        "root.pem": root.public_bytes(pem),
        "root.key": key_pem(root_key),
        "signer.pem": leaf.public_bytes(pem) + root.public_bytes(pem),
        "signer.key": key_pem(leaf_key),
    }


def create_identity(directory: str | os.PathLike[str] | None = None) -> SigningIdentity:
    """Create strata's local signing identity in ``directory`` (default :func:`identity_dir`),
    or load the one already there.

    The files are made in a private temporary folder beside ``directory`` and renamed into
    place in one step, so two processes starting at once end up with the same identity.

    Raises:
        CredentialsError: the folder cannot be written.
    """
    target = Path(directory) if directory is not None else identity_dir()
    if (target / "signer.pem").is_file():
        return _load_local(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".identity-", dir=target.parent))  # mode 0700
        try:
            for name, data in make_identity_pems().items():
                fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if name.endswith(".key") else 0o644)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            try:
                os.rename(tmp, target)
            except OSError:
                if not (target / "signer.pem").is_file():  # not a lost race: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        raise CredentialsError(
            f"cannot create the signing identity in {target} ({e.strerror or e}); set {ENV_CONFIG} to a writable "
            f"folder, give your own certificate with {ENV_CERT}/{ENV_KEY}, or turn signing off with {ENV_SIGN}=0"
        ) from e
    return _load_local(target)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CredentialsError(f"cannot read the {what} {path} ({e.strerror or e})") from e


def _load_local(directory: Path) -> SigningIdentity:
    chain, key = _read(directory / "signer.pem", "certificate"), _read(directory / "signer.key", "private key")
    root = _read(directory / "root.pem", "root certificate")
    return SigningIdentity(chain, key, root, _alg_for_key(key, directory / "signer.key"), directory)


def _alg_for_key(key_pem: bytes, where: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise CredentialsError(f"{where}: not an unencrypted PEM private key ({e}); export it without a passphrase") from e
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in algs:
            raise CredentialsError(f"{where}: EC curve {key.curve.name} is not allowed by C2PA; use P-256, P-384 or P-521")
        return algs[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise CredentialsError(f"{where}: {type(key).__name__} keys cannot sign C2PA manifests; use EC P-256, Ed25519 or RSA")


def load_identity(cert: str | os.PathLike[str] | None = None, key: str | os.PathLike[str] | None = None, *,
                  directory: str | os.PathLike[str] | None = None, create: bool = True) -> SigningIdentity:
    """The identity that signs: the user's own certificate, else strata's local one.

    Args:
        cert: PEM certificate chain (leaf first); default ``$STRATA_SIGN_CERT``.
        key: PEM private key of the leaf; default ``$STRATA_SIGN_KEY``. Give both or neither.
        directory: where the local identity lives (default :func:`identity_dir`).
        create: make the local identity if it does not exist yet (default True).

    Raises:
        CredentialsError: only one of cert/key given, an unreadable or unsupported key, or no
            local identity and ``create=False``.
    """
    cert = cert or os.environ.get(ENV_CERT) or None
    key = key or os.environ.get(ENV_KEY) or None
    if (cert is None) != (key is None):
        raise CredentialsError(f"give both a certificate and a private key ({ENV_CERT} and {ENV_KEY}), not just one")
    if cert is not None and key is not None:
        chain, key_pem = _read(Path(cert), "certificate"), _read(Path(key), "private key")
        from cryptography import x509

        try:
            x509.load_pem_x509_certificates(chain)
        except ValueError as e:
            raise CredentialsError(f"{cert}: not a PEM certificate chain ({e})") from e
        return SigningIdentity(chain, key_pem, None, _alg_for_key(key_pem, key), None)
    target = Path(directory) if directory is not None else identity_dir()
    if (target / "signer.pem").is_file():
        return _load_local(target)
    if not create:
        raise CredentialsError(f"no signing identity in {target}; write a file with strata once to create it")
    return create_identity(target)


def trust_anchors(directory: str | os.PathLike[str] | None = None) -> str:
    """PEM trust anchors for reading credentials: strata's local root (if it exists) and the
    certificates in ``$STRATA_TRUST_ANCHORS`` (a PEM file), if set."""
    parts: list[str] = []
    root = (Path(directory) if directory is not None else identity_dir()) / "root.pem"
    if root.is_file():
        parts.append(root.read_text())
    extra = os.environ.get("STRATA_TRUST_ANCHORS")
    if extra and Path(extra).is_file():
        parts.append(Path(extra).read_text())
    return "".join(parts)


# ----------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Ingredient:
    """An input file to record as an ingredient, with its bytes (its own manifest is kept).

    Attributes:
        data: the file's bytes.
        mime: its MIME type (e.g. "image/png").
        title: a name for it (usually the file name).
        relationship: "parentOf" (the file this one was made from by editing; at most one)
            or "componentOf" (a part placed into this one).
    """

    data: bytes
    mime: str
    title: str
    relationship: Literal["parentOf", "componentOf"] = "componentOf"


def _agent(provenance: "Provenance") -> dict[str, Any]:
    return {"name": "strata", "version": provenance.strata_version}


def manifest_definition(provenance: "Provenance", *, title: str, parents: Iterable[str] = (),
                        watermark: dict[str, Any] | None = None) -> dict[str, Any]:
    """The C2PA manifest definition (JSON) for a file made as ``provenance`` says.

    Args:
        provenance: what made the file.
        title: the file's name.
        parents: labels of ``parentOf`` file ingredients (see :func:`sign_file_bytes`); when
            given, the first action is ``c2pa.opened`` on them instead of ``c2pa.created``.
        watermark: the invisible watermark's description (method, payload), if one is in the pixels.
    """
    parents = list(parents)
    source_type = provenance.digital_source_type
    model = provenance.models[0] if provenance.models else None
    params: dict[str, Any] = {}
    if provenance.op:
        params["op"] = provenance.op
    if provenance.node_id:
        params["node"] = provenance.node_id
    if provenance.seed is not None:
        params["seed"] = provenance.seed
    if model is not None:
        params["models"] = [{"id": m.id, "hash": m.hash} for m in provenance.models]
    generated = provenance.source == "generated"
    if parents:
        first: dict[str, Any] = {"action": "c2pa.opened", "parameters": {"ingredientIds": parents}}
    else:
        first = {"action": "c2pa.created", "digitalSourceType": source_type}
        if generated and model is not None:
            # the generative model made the pixels: it is the software agent of the creation
            first["softwareAgent"] = {"name": model.id, "version": model.hash[:16]}
            first["parameters"] = dict(params, prompt=provenance.prompt) if provenance.prompt else dict(params)
        else:
            first["softwareAgent"] = _agent(provenance)
    actions = [first]
    if not generated or parents:
        edit = _OP_ACTIONS.get(provenance.op or "", "c2pa.edited")
        action: dict[str, Any] = {"action": edit, "softwareAgent": _agent(provenance), "parameters": params}
        if provenance.source != "edited":
            action["digitalSourceType"] = source_type
        actions.append(action)
    ingredients = [
        {"title": f"strata asset {a}", "relationship": "componentOf", "instance_id": f"strata:asset:{a}"}
        for a in provenance.input_assets
    ]
    assertions: list[dict[str, Any]] = [
        {"label": "c2pa.actions.v2", "data": {"actions": actions}},
        {"label": "org.strata.provenance", "data": json.loads(provenance.model_dump_json())},
    ]
    if watermark is not None:
        assertions.append({"label": "org.strata.watermark", "data": watermark})
    definition: dict[str, Any] = {
        "claim_generator_info": [_agent(provenance)],
        "title": title,
        "assertions": assertions,
    }
    if ingredients:
        definition["ingredients"] = ingredients
    return definition


def _context(settings: dict[str, Any]) -> Any:
    import c2pa

    return c2pa.Context.from_dict(settings)


def sign_file_bytes(data: bytes, mime: str, provenance: "Provenance", *, identity: SigningIdentity | None = None,
                    title: str | None = None, ingredients: Iterable[Ingredient] = (),
                    watermark: dict[str, Any] | None = None) -> bytes:
    """Return ``data`` (a complete file) with a signed C2PA manifest embedded.

    The one function every writer calls (images now; audio and video writers too).

    Args:
        data: the file's bytes (PNG, JPEG, WebP, TIFF, WAV or MP4).
        mime: its MIME type, or a short name from :data:`MIME_TYPES` ("png", "wav", ...).
        provenance: what made the file; recorded as actions, ingredients and the
            ``org.strata.provenance`` assertion.
        identity: who signs (default :func:`load_identity`, which creates strata's local
            identity on first use).
        title: the file's name in the manifest (default "<asset id>.<ext>" or "untitled").
        ingredients: input files to record with their own manifests (see :class:`Ingredient`).
        watermark: description of an invisible watermark in the content, recorded as the
            ``org.strata.watermark`` assertion (default none).

    Raises:
        MediaError: an unsupported MIME type, or bytes c2pa cannot parse as that type.
        CredentialsError: c2pa-python is missing, or the identity cannot sign.
    """
    mime = MIME_TYPES.get(mime.lower(), mime.lower())
    if mime not in MIME_TYPES.values():
        raise MediaError(f"cannot sign {mime!r} files; strata signs {', '.join(sorted(MIME_TYPES.values()))}")
    try:
        import c2pa
    except ImportError as e:
        raise CredentialsError(f"content credentials need c2pa-python: pip install c2pa-python (or set {ENV_SIGN}=0)") from e
    identity = identity or load_identity()
    ingredients = list(ingredients)
    parents = [f"parent-{i}" for i, ing in enumerate(ingredients) if ing.relationship == "parentOf"]
    if len(parents) > 1:
        raise CredentialsError("a file has at most one parent ingredient (relationship 'parentOf'); make the others componentOf")
    ext = {v: k for k, v in MIME_TYPES.items()}[mime]
    definition = manifest_definition(provenance, title=title or f"{provenance.asset_id or 'untitled'}.{ext}",
                                     parents=parents, watermark=watermark)
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(identity.alg, identity.cert_chain_pem,
                                                           identity.key_pem, None))
    except c2pa.C2paError as e:
        raise CredentialsError(f"cannot sign with the certificate/key given ({e}); check that the key matches the "
                               "certificate and that the chain is PEM, leaf first") from e
    # No thumbnail: the file itself is the picture, and a JPEG thumbnail would add ~100-300 kB.
    context = _context({"builder": {"thumbnail": {"enabled": False}}})
    try:
        with c2pa.Builder(definition, context=context) as builder:
            for i, ing in enumerate(ingredients):
                spec = {"title": ing.title, "relationship": ing.relationship, "label": f"parent-{i}"
                        if ing.relationship == "parentOf" else f"component-{i}"}
                builder.add_ingredient(spec, MIME_TYPES.get(ing.mime, ing.mime), io.BytesIO(ing.data))
            out = io.BytesIO()
            builder.sign(signer, mime, io.BytesIO(data), out)
    except c2pa.C2paError as e:
        text = str(e)
        if any(w in text.lower() for w in ("certificate", "signature", "signing", "credential")):
            raise CredentialsError(f"c2pa refused to sign: {text}. A self-signed leaf is refused: use a CA-issued "
                                   "certificate with digitalSignature key usage and the emailProtection EKU") from e
        raise MediaError(f"cannot add content credentials to this {mime} data: {text}") from e
    finally:
        signer.close()
        context.close()
    return out.getvalue()


__all__ = [
    "CredentialsError",
    "ENV_CERT",
    "ENV_CONFIG",
    "ENV_KEY",
    "ENV_SIGN",
    "Ingredient",
    "MIME_TYPES",
    "SigningIdentity",
    "config_dir",
    "create_identity",
    "identity_dir",
    "load_identity",
    "make_identity_pems",
    "manifest_definition",
    "sign_file_bytes",
    "signing_enabled",
    "trust_anchors",
]
