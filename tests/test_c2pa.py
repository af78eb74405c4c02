"""C2PA Content Credentials (store/content_credentials.py): every output PNG signed, read back with
c2pa-python's own Reader, tampering caught, `info` honest about an untrusted local signer."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import struct
import zlib

import c2pa
import pytest
from PIL import Image, ImageDraw

from designerbox.cli import main
from designerbox.jobs.generate import GenerationRequest
from designerbox.jobs.tool import run_tool
from designerbox.settings import Settings
from designerbox.store.content_credentials import (C2PA_SETTINGS, GENERATION_LABEL, CredentialsError,
                                                   read_credentials, sign_png)
from designerbox.store.png_metadata import read_record

FAST = {"prompt": "a red apple", "model": "tiny-test", "steps": 2, "seed": 1234}


def reader(png: bytes):
    return c2pa.Reader("image/png", io.BytesIO(png), context=c2pa.Context.from_dict(C2PA_SETTINGS))


def codes(r, kind: str) -> list[str]:
    return [s["code"] for s in r.get_validation_results()["activeManifest"].get(kind, [])]


def tamper_pixel_byte(png: bytes) -> bytes:
    """The same PNG with one byte of its (decompressed) pixel data changed: still a well-formed PNG."""
    at = png.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", png[at:at + 4])
    assert png.count(b"IDAT") == 1  # a small image: one data chunk
    raw = bytearray(zlib.decompress(png[at + 8:at + 8 + length]))
    raw[1] ^= 0x01  # the first pixel's red byte (raw[0] is the first row's filter type)
    data = zlib.compress(bytes(raw))
    chunk = struct.pack(">I", len(data)) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data))
    return png[:at] + chunk + png[at + 12 + length:]


def test_generated_image_is_signed_and_reads_back(studio, home):
    (img,) = studio.generate(GenerationRequest(**FAST))
    png = img.png
    with reader(png) as r:
        active = r.get_active_manifest()
        assert r.get_validation_state() == "Valid"  # signature and hashes check; the signer is not on a trust list
        assert codes(r, "failure") == ["signingCredential.untrusted"]
        assert "assertion.dataHash.match" in codes(r, "success")
    assert active["claim_generator_info"][0]["name"] == "DesignerBox"
    assertions = {a["label"]: a["data"] for a in active["assertions"]}
    (created,) = assertions["c2pa.actions.v2"]["actions"]
    assert created["action"] == "c2pa.created" and created["digitalSourceType"].endswith("/trainedAlgorithmicMedia")
    gen = assertions[GENERATION_LABEL]
    assert gen["seed"] == 1234 == img.record["seed"]
    assert gen["model"] == {"id": "tiny-test", "sha256": img.record["model"]["sha256"]}
    assert len(gen["model"]["sha256"]) == 64
    assert gen["steps"] == 2 and gen["sampler"] == img.record["request"]["sampler"]
    assert active["signature_info"]["common_name"] == "DesignerBox local signer"
    # the text chunks stay readable, and the gallery's name is the sha256 of the signed file
    assert read_record(img.path) == img.record
    assert img.path.endswith(f"{hashlib.sha256(png).hexdigest()}.png")
    # the local identity: made once, key readable by its owner only, reused
    key = home / "keys" / "c2pa" / "signer.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    studio.generate(GenerationRequest(**FAST))
    assert key.read_bytes() == before


def test_tampered_pixels_read_as_a_hash_mismatch(studio, tmp_path, capsys):
    (img,) = studio.generate(GenerationRequest(**FAST))
    bad = tamper_pixel_byte(img.png)
    with reader(bad) as r:
        assert r.get_validation_state() == "Invalid"
        assert "assertion.dataHash.mismatch" in codes(r, "failure")
    (tmp_path / "good.png").write_bytes(img.png)
    (tmp_path / "bad.png").write_bytes(bad)
    assert main(["info", str(tmp_path / "good.png"), "--json"]) == 0
    good = json.loads(capsys.readouterr().out)
    assert good["seed"] == 1234
    cred = good["content_credentials"]
    assert cred["present"] and cred["state"] == "Valid" and not cred["trusted"]
    assert cred["failures"] == ["signingCredential.untrusted"] and cred["generation"]["seed"] == 1234
    assert main(["info", str(tmp_path / "good.png")]) == 0
    out = capsys.readouterr().out
    assert "Seed: 1234" in out and "untrusted signer DesignerBox local signer" in out and "INVALID" not in out
    assert main(["info", str(tmp_path / "bad.png"), "--json"]) == 0
    cred = json.loads(capsys.readouterr().out)["content_credentials"]
    assert cred["state"] == "Invalid" and "assertion.dataHash.mismatch" in cred["failures"]
    assert main(["info", str(tmp_path / "bad.png")]) == 0
    assert "Content Credentials: INVALID (assertion.dataHash.mismatch)" in capsys.readouterr().out


def test_tool_output_is_an_edit_of_its_source(studio, tmp_path):
    im = Image.new("RGB", (480, 360), (205, 205, 210))
    ImageDraw.Draw(im).rounded_rectangle((260, 80, 400, 300), 30, fill=(30, 90, 200))
    photo = tmp_path / "mug.jpg"
    im.save(photo, quality=92)
    (o,) = run_tool("product", [photo], preset="ebay", studio=studio, save=False)
    with reader(o.png) as r:
        assert codes(r, "failure") == ["signingCredential.untrusted"]
        active = r.get_active_manifest()
    assertions = {a["label"]: a["data"] for a in active["assertions"]}
    assert [a["action"] for a in assertions["c2pa.actions.v2"]["actions"]] == ["c2pa.opened", "c2pa.edited"]
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()
    assert assertions[GENERATION_LABEL]["sources"] == [{"role": "input", "sha256": sha, "file": "mug.jpg"}]
    (ingredient,) = active["ingredients"]
    assert ingredient["relationship"] == "parentOf" and ingredient["instance_id"] == f"sha256:{sha}"


def test_off_writes_none(studio, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DESIGNERBOX_C2PA", "off")
    (img,) = studio.generate(GenerationRequest(**FAST))
    assert b"caBX" not in img.png and c2pa.Reader.try_create("image/png", io.BytesIO(img.png)) is None
    assert read_credentials(img.png) == {"present": False}
    assert main(["info", img.path]) == 0
    assert "Content Credentials: none" in capsys.readouterr().out
    monkeypatch.setenv("DESIGNERBOX_C2PA", "maybe")
    with pytest.raises(ValueError, match="DESIGNERBOX_C2PA must be 'on' or 'off'"):
        Settings.from_env()


def test_users_own_identity_and_bad_ones(home, monkeypatch, tmp_path):
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    record = {"model": {"id": "m", "sha256": "ab" * 32}, "seed": 3, "request": {}}
    signed = sign_png(png.getvalue(), record)  # makes the local identity; reuse it as "the user's own"
    folder = home / "keys" / "c2pa"
    monkeypatch.setenv("DESIGNERBOX_C2PA_CERT", str(folder / "signer.pem"))
    monkeypatch.setenv("DESIGNERBOX_C2PA_KEY", str(folder / "signer.key"))
    assert read_credentials(sign_png(png.getvalue(), record))["generation"]["seed"] == 3
    assert read_credentials(signed)["state"] == "Valid"
    # a key that is not the certificate's
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "other.key").write_bytes(other)
    monkeypatch.setenv("DESIGNERBOX_C2PA_KEY", str(tmp_path / "other.key"))
    with pytest.raises(CredentialsError, match="does not match the first certificate"):
        sign_png(png.getvalue(), record)
    monkeypatch.setenv("DESIGNERBOX_C2PA_KEY", str(tmp_path / "missing.key"))
    with pytest.raises(CredentialsError, match=r"missing.key \(DESIGNERBOX_C2PA_KEY\) cannot be read"):
        sign_png(png.getvalue(), record)
    (tmp_path / "junk.pem").write_text("not a certificate")
    monkeypatch.setenv("DESIGNERBOX_C2PA_CERT", str(tmp_path / "junk.pem"))
    with pytest.raises(CredentialsError, match="cannot be read as a PEM certificate chain"):
        sign_png(png.getvalue(), record)
    monkeypatch.delenv("DESIGNERBOX_C2PA_KEY")
    with pytest.raises(ValueError, match="set both DESIGNERBOX_C2PA_CERT"):
        Settings.from_env()


def test_a_bad_signing_certificate_stops_a_generation_before_it_draws(home, monkeypatch, tmp_path):
    from designerbox.studio import Studio

    (tmp_path / "junk.pem").write_text("not a certificate")
    monkeypatch.setenv("DESIGNERBOX_C2PA_CERT", str(tmp_path / "junk.pem"))
    monkeypatch.setenv("DESIGNERBOX_C2PA_KEY", str(tmp_path / "junk.pem"))
    studio, steps = Studio(Settings.from_env()), []
    with pytest.raises(CredentialsError, match="junk.pem"):
        studio.generate(GenerationRequest(**FAST), progress=steps.append)
    assert steps == [] and studio.gallery.count() == 0


def test_lora_hashes_and_refiner_are_in_the_assertion(home):
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    record = {"model": {"id": "sd", "sha256": "ab" * 32}, "seed": 7, "request": {"steps": 20, "cfg_scale": 5.0},
              "loras": [{"name": "ink", "strength": 0.8, "layers": 12, "sha256": "cd" * 32}],
              "refiner": {"id": "refiner", "sha256": "ef" * 32, "strength": 0.3, "seconds": 1.0}}
    gen = read_credentials(sign_png(png.getvalue(), record))["generation"]
    assert gen["loras"] == [{"name": "ink", "strength": 0.8, "sha256": "cd" * 32}]
    assert gen["refiner"] == {"id": "refiner", "sha256": "ef" * 32, "strength": 0.3}
    assert gen["steps"] == 20 and gen["cfg_scale"] == 5.0 and gen["seed"] == 7
