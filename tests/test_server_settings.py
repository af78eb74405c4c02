"""Every front door opens the records the settings name: with DESIGNERBOX_DATABASE and DESIGNERBOX_IMAGES
set, an image made by the CLI is in `history` and `show`, and the server's gallery lists the same image."""

import json

from fastapi.testclient import TestClient

from designerbox.cli import main
from designerbox.server.app import create_app
from designerbox.settings import Settings
from designerbox.store.gallery import Gallery


def test_cli_history_show_and_server_share_the_database(home, tmp_path, monkeypatch, capsys):
    db, images = tmp_path / "shared.sqlite", tmp_path / "shared-images"
    monkeypatch.setenv("DESIGNERBOX_DATABASE", f"sqlite:///{db}")
    monkeypatch.setenv("DESIGNERBOX_IMAGES", str(images))
    assert main(["generate", "a blue kite", "--model", "tiny-test", "--steps", "2", "--seed", "5",
                 "-o", str(tmp_path / "out"), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)[0]
    assert db.exists() and any(images.rglob("*.png"))
    assert Gallery(home / "gallery").list() == []  # nothing went to the home's own gallery file

    assert main(["history", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [made["id"]] and rows[0]["prompt"] == "a blue kite"
    assert main(["show", made["id"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["record"]["seed"] == 5 and shown["path"].startswith("images/")

    app = create_app(Settings.from_env(), workers=False)
    with TestClient(app) as client:
        listed = client.get("/api/v1/images").json()["images"]
        assert [i["id"] for i in listed] == [made["id"]]
        png = client.get(f"/api/v1/images/{made['id']}.png")
        assert png.status_code == 200 and png.content == (tmp_path / "out").joinpath(
            made["path"].rsplit("/", 1)[-1]).read_bytes()
