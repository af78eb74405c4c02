"""C2PA Content Credentials: a signed manifest inside every output PNG (the `caBX` chunk).

    sign_png(png, record) -> png with a manifest      read_credentials(png) -> what a reader sees

The manifest says DesignerBox made the image: a `c2pa.created` action (digitalSourceType
trainedAlgorithmicMedia) for a drawn image, or `c2pa.opened` + `c2pa.edited` with the source as a
parentOf ingredient for a tool, a filter or an image-to-image draw, and an `org.designerbox.generation`
assertion with the model id and sha256, the LoRA hashes, the seed, sampler, steps and cfg, and the
sources' sha256. Its data hash covers every byte of the file but the manifest chunk, so the text
chunks (`parameters`, `designerbox`) are signed too and changing one pixel byte reads as
`assertion.dataHash.mismatch`.

The signer: $DESIGNERBOX_C2PA_CERT (PEM chain, end-entity first) and $DESIGNERBOX_C2PA_KEY, or a
local identity made on first use under $DESIGNERBOX_HOME/keys/c2pa/: a root CA (its key is not kept)
and an ES256 end-entity certificate with the profile c2pa-rs checks (keyUsage digitalSignature,
extendedKeyUsage emailProtection, not a CA, key identifiers). No trust list holds that root, so a
reader calls the signer untrusted: the signature and hashes check, the identity is only the studio's
own word. DESIGNERBOX_C2PA=off writes no manifest. Nothing here touches the network: no timestamp
authority, no OCSP, no remote manifests.
"""

from __future__ import annotations

import datetime
import io
import mimetypes
import os
import tempfile
from pathlib import Path

from designerbox.settings import Settings

GENERATION_LABEL = "org.designerbox.generation"
TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
IDENTITY = "keys/c2pa"  # under $DESIGNERBOX_HOME: signer.pem (chain), signer.key (0600), root.pem
# no thumbnail (it would double a small PNG), and no network while reading or signing
C2PA_SETTINGS = {"builder": {"thumbnail": {"enabled": False}},
                 "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
INSTALL_HINT = "install it with `pip install c2pa-python==0.38.1`, or set DESIGNERBOX_C2PA=off"


class CredentialsError(ValueError):
    """The signing certificate or key cannot be used (unreadable, not PEM, not a pair)."""


def sign_png(png: bytes, record: dict, settings: Settings | None = None) -> bytes:
    """The PNG with a signed C2PA manifest describing the record; unchanged when DESIGNERBOX_C2PA=off."""
    settings = settings or Settings.from_env()
    if not settings.c2pa:
        return png
    c2pa = _c2pa()
    chain, key, alg = signing_identity(settings)
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, chain, key, None))
    out = io.BytesIO()
    with c2pa.Builder(manifest(record), c2pa.Context.from_dict(C2PA_SETTINGS)) as builder:
        builder.sign(signer, "image/png", io.BytesIO(png), out)
    return out.getvalue()


def manifest(record: dict) -> dict:
    """The manifest definition for one image's record (store/png_metadata.py, jobs/tool.py, jobs/filter.py)."""
    from designerbox import __version__

    agent = {"name": "DesignerBox", "version": __version__}
    r = record.get("request", {})
    sources = _sources(record)
    generation = {
        "model": {k: record["model"].get(k) for k in ("id", "sha256")},
        "loras": [{k: lo[k] for k in ("name", "sha256", "strength") if k in lo} for lo in record.get("loras") or []],
        "seed": record.get("seed"),
        "sampler": r.get("sampler"), "schedule": r.get("schedule"), "steps": r.get("steps"),
        "cfg_scale": r.get("cfg_scale"),
        "task": record.get("task", "generate"),
        "sources": [{"role": role, "sha256": s.get("sha256"), "file": s.get("file")} for role, s in sources],
    }
    if record.get("refiner"):
        generation["refiner"] = {k: record["refiner"].get(k) for k in ("id", "sha256", "strength")}
    if record.get("tool"):
        generation["tool"] = record["tool"]
    task = record.get("task")  # "tool", "filter", or None for a generation
    what = (f"{record['tool']['name']} tool" if task == "tool" else f"filter {record['model']['id']}"
            if task == "filter" else f"drawn by {record['model']['id']}")
    if not task and not sources:  # drawn from noise: created, by a trained model
        actions = [{"action": "c2pa.created", "digitalSourceType": TRAINED, "softwareAgent": agent,
                    "description": what}]
        ingredients = []
    else:  # an edit of a source (a file, or an image the tool drew first): opened, then edited
        source = sources[0][1] if sources else {}
        title = source.get("file") or "source image"
        ingredient = {"title": title, "format": mimetypes.guess_type(title)[0] or "application/octet-stream",
                      "relationship": "parentOf", "label": "source"}
        if source.get("sha256"):
            ingredient["instance_id"] = f"sha256:{source['sha256']}"
        ingredients = [ingredient]
        actions = [{"action": "c2pa.opened", "softwareAgent": agent, "parameters": {"ingredientIds": ["source"]}},
                   {"action": "c2pa.edited", "softwareAgent": agent, "description": what}]
        if not task:  # image to image, inpainting: a model drew the new pixels
            actions[1]["digitalSourceType"] = TRAINED
    return {"claim_generator_info": [agent], "title": f"designerbox {record.get('seed', '')}".strip(),
            "ingredients": ingredients,
            "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}},
                           {"label": GENERATION_LABEL, "data": generation}]}


def _sources(record: dict) -> list[tuple[str, dict]]:
    """(role, {sha256, file}) of the images an output was made from, as its record names them."""
    r = record.get("request", {})
    found = [(k, r[k]) for k in ("init_image", "mask_image") if isinstance(r.get(k), dict)]
    if isinstance(record.get("input"), dict) and record["input"].get("sha256"):
        found.insert(0, ("input", record["input"]))
    return found


def read_credentials(png: bytes) -> dict:
    """What a C2PA reader makes of the PNG: present, state (Valid / Invalid / Trusted), signer, trusted,
    the failure codes, and the DesignerBox assertion. Without c2pa-python: present None and why."""
    try:
        c2pa = _c2pa()
    except CredentialsError as err:
        return {"present": None, "error": str(err)}
    try:
        reader = c2pa.Reader.try_create("image/png", io.BytesIO(png), context=c2pa.Context.from_dict(C2PA_SETTINGS))
    except c2pa.C2paError as err:
        return {"present": True, "state": "Invalid", "trusted": False, "error": str(err)}
    if reader is None:
        return {"present": False}
    with reader:
        active = reader.get_active_manifest() or {}
        results = (reader.get_validation_results() or {}).get("activeManifest", {})
        state = reader.get_validation_state()
    failures = [f["code"] for f in results.get("failure", [])]
    sig = active.get("signature_info", {})
    generation = next((a["data"] for a in active.get("assertions", []) if a["label"] == GENERATION_LABEL), None)
    return {"present": True, "state": state, "trusted": state == "Trusted",
            "signer": ", ".join(x for x in (sig.get("common_name"), sig.get("issuer")) if x),
            "claim_generator": " ".join(str(active.get("claim_generator_info", [{}])[0].get(k, ""))
                                        for k in ("name", "version")).strip(),
            "failures": failures, "generation": generation}


def describe(cred: dict) -> str:
    """One line for `designerbox info`."""
    if cred["present"] is None:
        return f"Content Credentials: cannot check ({cred['error']})"
    if not cred["present"]:
        return "Content Credentials: none"
    if cred.get("error"):
        return f"Content Credentials: unreadable ({cred['error']})"
    untrusted = [f for f in cred["failures"] if f == "signingCredential.untrusted"]
    broken = [f for f in cred["failures"] if f not in untrusted]
    if broken:
        return f"Content Credentials: INVALID ({', '.join(broken)}), signed by {cred['signer']}"
    if cred["trusted"]:
        return f"Content Credentials: valid, trusted signer {cred['signer']} ({cred['claim_generator']})"
    return (f"Content Credentials: valid signature and hashes, untrusted signer {cred['signer']} "
            f"(not on a C2PA trust list) ({cred['claim_generator']})")


def signing_identity(settings: Settings) -> tuple[bytes, bytes, str]:
    """(PEM certificate chain, PEM private key, c2pa algorithm name): the user's own, or the local one."""
    if settings.c2pa_cert is not None:
        return _load_pair(settings.c2pa_cert, settings.c2pa_key)
    folder = settings.home / IDENTITY
    if not (folder / "signer.key").exists():
        _create_identity(folder)
    return _load_pair(folder / "signer.pem", folder / "signer.key")


def _load_pair(cert_path: Path, key_path: Path) -> tuple[bytes, bytes, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        chain = Path(cert_path).read_bytes()
        certs = x509.load_pem_x509_certificates(chain)
    except (OSError, ValueError) as err:
        raise CredentialsError(f"the C2PA certificate {cert_path} (DESIGNERBOX_C2PA_CERT) cannot be read as a PEM "
                               f"certificate chain: {err}") from None
    try:
        key_pem = Path(key_path).read_bytes()
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (OSError, ValueError, TypeError) as err:
        raise CredentialsError(f"the C2PA private key {key_path} (DESIGNERBOX_C2PA_KEY) cannot be read as an "
                               f"unencrypted PEM private key: {err}") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if certs[0].public_key().public_bytes(serialization.Encoding.DER, pub) != \
            key.public_key().public_bytes(serialization.Encoding.DER, pub):
        raise CredentialsError(f"the C2PA private key {key_path} does not match the first certificate of "
                               f"{cert_path} (the chain must start with the signing certificate)")
    curves = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in curves:
        alg = curves[key.curve.name]
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        alg = "ed25519"
    elif isinstance(key, rsa.RSAPrivateKey):
        alg = "ps256"
    else:
        raise CredentialsError(f"the C2PA private key {key_path} is a {type(key).__name__}; C2PA signs with "
                               f"EC P-256/P-384/P-521, Ed25519 or RSA keys")
    return chain, key_pem, alg


def _create_identity(folder: Path) -> None:
    """A local root CA and an ES256 signing certificate it issued, written into a temporary folder that
    is then renamed to `folder` (two processes starting at once: the first rename wins, both use it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DesignerBox local studio"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, key_cert_sign=not sign, crl_sign=not sign,
                             content_commitment=False, key_encipherment=False, data_encipherment=False,
                             key_agreement=False, encipher_only=False, decipher_only=False)

    def cert(subject, issuer, public_key, signing_key, extensions):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=3650))
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
        for ext, critical in extensions:
            b = b.add_extension(ext, critical=critical)
        return b.sign(signing_key, hashes.SHA256())

    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = cert(name("DesignerBox local root"), name("DesignerBox local root"), root_key.public_key(), root_key,
                [(x509.BasicConstraints(ca=True, path_length=0), True), (usage(sign=False), True)])
    leaf = cert(name("DesignerBox local signer"), root.subject, key.public_key(), root_key,
                [(x509.BasicConstraints(ca=False, path_length=None), True), (usage(sign=True), True),
                 (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False),
                 (x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False)])
    pem = serialization.Encoding.PEM
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".c2pa."))  # 0700
    (tmp / "root.pem").write_bytes(root.public_bytes(pem))
    (tmp / "signer.pem").write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    fd = os.open(tmp / "signer.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    try:
        os.rename(tmp, folder)
    except OSError:  # another process made it first
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
        if not (folder / "signer.key").exists():
            raise


def _c2pa():
    try:
        import c2pa
    except ImportError:
        raise CredentialsError(f"C2PA Content Credentials need the c2pa-python package: {INSTALL_HINT}") from None
    return c2pa
