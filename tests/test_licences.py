"""Model licences and commercial use (registry/licences.py, presets/licences.json): the table, `models add`
recording a licence (--licence, safetensors metadata, a model card's front matter, else unknown), the flag
in `models list/show`, GET /api/v1/models and the generation record, and the notice of `generate`.

The user checkpoints are the tiny session fixtures of conftest.py (tiny_sd, tiny_flux)."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient
from server_util import settings

from designerbox.cli import main
from designerbox.registry import licences


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def set_licence(home, model_id: str, licence: str) -> None:
    path = home / "models" / model_id / "manifest.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"licence": licence}, indent=2))


# --- the table ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, licence_id, commercial", [
    ("MIT", "MIT", "yes"),
    ("apache-2.0", "Apache-2.0", "yes"),                       # FLUX.1 schnell
    ("CreativeML Open RAIL-M", "creativeml-openrail-m", "conditions"),  # SD 1.x, as a model card names it
    ("openrail++", "openrail++", "conditions"),                 # SD 2.x, SDXL
    ("stabilityai-ai-community", "stabilityai-ai-community", "conditions"),  # SD3 medium, 3.5
    ("FLUX-1-dev-non-commercial-license", "flux-1-dev-non-commercial-license", "no"),
    ("CC-BY-NC-4.0", "CC-BY-NC-4.0", "no"),
    ("unknown (user-supplied)", "unknown", "unknown"),          # what user models recorded before
    (None, "unknown", "unknown"),
])
def test_licences_are_found_by_id_or_alias(text, licence_id, commercial):
    f = licences.flag(text)
    assert (f["licence"], f["commercial_use"]) == (licence_id, commercial)
    assert f["condition"] or commercial == "yes"


def test_the_table_is_valid_and_conditions_have_a_summary():
    table = licences.table()
    assert {"MIT", "Apache-2.0", "creativeml-openrail-m", "openrail++", "stabilityai-ai-community",
            "flux-1-dev-non-commercial-license", "CC-BY-NC-4.0", "unknown"} <= set(table)
    for lic in table.values():
        assert lic.commercial in licences.COMMERCIAL and lic.name and "http" not in lic.name + lic.summary
        assert lic.summary or lic.commercial == "yes"
    assert [b.id for b in licences.base_licences("flux-dev")] == ["flux-1-dev-non-commercial-license"]


def test_an_unknown_id_is_refused_naming_the_valid_ones_and_unknown_text_is_flagged_unknown():
    with pytest.raises(licences.UnknownLicenceError, match=r"unknown licence 'gpl-9'; valid licence ids: MIT, .*openrail"):
        licences.get("gpl-9")
    assert licences.flag("Some Custom Licence v2") == {
        "licence": "Some Custom Licence v2", "licence_name": "Some Custom Licence v2", "commercial_use": "unknown",
        "condition": "a licence the table does not know: read it before commercial use"}
    assert licences.notice("m", "MIT") is None and licences.notice("m", "openrail++") is None
    assert "non-commercial purposes only" in licences.notice("m", "flux-1-dev-non-commercial-license")
    assert "has no recorded licence" in licences.notice("m", "unknown")


def test_the_licences_command_lists_the_table(capsys):
    code, out, _ = run(capsys, "models", "licences")
    assert code == 0 and "flux-1-dev-non-commercial-license" in out and "USD 1M" in out
    code, out, _ = run(capsys, "models", "licences", "--json")
    assert {r["id"]: r["commercial"] for r in json.loads(out)}["CC-BY-NC-4.0"] == "no"


# --- models add ------------------------------------------------------------------------------------------

def add(capsys, *argv) -> dict:
    code, out, err = run(capsys, "models", "add", *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_add_with_licence_shows_in_list_show_and_api(tiny_sd, sd_home, capsys):
    _, single, _ = tiny_sd
    report = add(capsys, single, "--id", "mine", "--licence", "CreativeML Open RAIL-M")
    assert (report["licence"], report["commercial_use"], report["licence_source"]) == (
        "creativeml-openrail-m", "conditions", "--licence")
    manifest = json.loads((sd_home / "models" / "mine" / "manifest.json").read_text())
    assert manifest["licence"] == "creativeml-openrail-m"
    code, out, _ = run(capsys, "models", "list")
    row = next(line for line in out.splitlines() if line.startswith("mine "))
    assert code == 0 and "commercial" in out.splitlines()[0] and "creativeml-openrail-m" in row and "conditions" in row
    code, out, _ = run(capsys, "models", "list", "--json")
    assert {m["id"]: m["commercial_use"] for m in json.loads(out)}["mine"] == "conditions"
    code, out, _ = run(capsys, "models", "show", "mine")
    assert "commercial_use: conditions" in out and "Attachment A" in out
    from designerbox.server.app import create_app

    with TestClient(create_app(settings(sd_home), workers=False)) as client:
        models = {m["id"]: m for m in client.get("/api/v1/models").json()["models"]}
        one = client.get("/api/v1/models/mine").json()
    assert (models["mine"]["licence"], models["mine"]["commercial_use"]) == ("creativeml-openrail-m", "conditions")
    assert models["mine"]["licence_name"] == "CreativeML Open RAIL-M" and "Attachment A" in one["licence_condition"]
    assert models["dbx-base-v1"]["commercial_use"] == "yes" and models["dbx-base-v1"]["licence"] == "MIT"


def test_add_with_an_unknown_licence_id_fails_naming_the_valid_ones(tiny_sd, sd_home, capsys):
    code, _, err = run(capsys, "models", "add", tiny_sd[1], "--licence", "free-for-all")
    assert code == 2 and "unknown licence 'free-for-all'; valid licence ids:" in err and "openrail++" in err
    assert not (sd_home / "models" / "tiny-sd15").exists()


def test_add_reads_the_licence_from_safetensors_metadata(tiny_sd, sd_home, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_sd[1]))
    save_file(state, str(tmp_path / "stated.safetensors"), metadata={"modelspec.license": "CreativeML Open RAIL-M"})
    save_file(state, str(tmp_path / "odd.safetensors"), metadata={"license": "My Own Terms 1.0"})
    report = add(capsys, tmp_path / "stated.safetensors")
    assert (report["licence"], report["commercial_use"]) == ("creativeml-openrail-m", "conditions")
    assert "modelspec.license" in report["licence_source"] and report["licence_note"] is None
    report = add(capsys, tmp_path / "odd.safetensors")  # kept as stated, flagged unknown
    assert (report["licence"], report["commercial_use"]) == ("My Own Terms 1.0", "unknown")
    assert "does not know" in report["licence_note"]
    report = add(capsys, tiny_sd[1], "--id", "plain")  # nothing stated: unknown, never guessed from the family
    assert (report["licence"], report["commercial_use"]) == ("unknown", "unknown")
    assert "creativeml-openrail-m" in report["licence_note"] and "--licence" in report["licence_note"]
    report = add(capsys, tmp_path / "stated.safetensors", "--id", "given", "--licence", "CC-BY-NC-4.0")
    assert report["licence"] == "CC-BY-NC-4.0"  # --licence wins over the metadata


def test_add_reads_a_model_cards_front_matter(tiny_flux, sd_home, tmp_path, capsys):
    folder = tmp_path / "my-flux-dev"
    shutil.copytree(tiny_flux["flux-dev"], folder)
    (folder / "README.md").write_text("---\nlicense: other\nlicense_name: flux-1-dev-non-commercial-license\n"
                                      "tags:\n- text-to-image\n---\n# My FLUX\n")
    report = add(capsys, folder)
    assert (report["family"], report["licence"], report["commercial_use"]) == (
        "flux-dev", "flux-1-dev-non-commercial-license", "no")
    assert report["licence_source"] == "README.md front matter"


# --- generating ---------------------------------------------------------------------------------------------

def test_the_record_carries_the_flag_and_generate_gives_a_notice(home, tmp_path, capsys):
    fast = ["--model", "tiny-test", "--steps", "2", "--seed", "1"]
    code, out, err = run(capsys, "generate", "a cat", *fast, "-o", tmp_path / "mit.png", "--json")
    record = json.loads(out)[0]["record"]
    assert code == 0 and (record["model"]["licence"], record["model"]["commercial_use"]) == ("MIT", "yes")
    assert "notice" not in err
    set_licence(home, "tiny-test", "flux-1-dev-non-commercial-license")
    code, out, err = run(capsys, "generate", "a cat", *fast, "-o", tmp_path / "nc.png")
    assert code == 0 and out.strip() == str(tmp_path / "nc.png")  # stdout unchanged: the notice is on stderr
    assert err.count("notice: model tiny-test is under the FLUX.1 [dev] Non-Commercial License") == 1
    code, out, _ = run(capsys, "info", tmp_path / "nc.png")
    assert "Model licence: flux-1-dev-non-commercial-license (commercial use: no)" in out
    code, out, _ = run(capsys, "info", tmp_path / "nc.png", "--json")
    assert json.loads(out)["model"]["commercial_use"] == "no"
    set_licence(home, "tiny-test", "unknown")
    code, _, err = run(capsys, "generate", "a cat", *fast, "-o", tmp_path / "unknown.png")
    assert code == 0 and "notice: model tiny-test has no recorded licence" in err


def test_the_python_api_record_carries_the_flag(studio):
    from designerbox import api

    [image] = api.generate("a dog", studio=studio, save=False, model="tiny-test", steps=2, seed=2)
    assert image.record["model"]["commercial_use"] == "yes"
