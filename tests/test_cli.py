"""The `designerbox` command, run in-process through cli.main and once as a real subprocess."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from designerbox.cli import main

FAST = ["--model", "tiny-test", "--steps", "3"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_generate_info_and_reproduce(home, tmp_path, capsys):
    code, out, _ = run(capsys, "generate", "a red apple", *FAST, "--seed", "9", "-o", str(tmp_path / "a.png"))
    assert code == 0 and out.strip() == str(tmp_path / "a.png")
    code, out, _ = run(capsys, "info", str(tmp_path / "a.png"))
    assert code == 0 and "a red apple" in out and "Seed: 9" in out and "Model: tiny-test" in out
    code, out, _ = run(capsys, "info", str(tmp_path / "a.png"), "--json")
    assert json.loads(out)["seed"] == 9
    code, out, _ = run(capsys, "generate", "--from", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"))
    assert code == 0
    a, b = (np.asarray(Image.open(tmp_path / f)) for f in ("a.png", "b.png"))
    assert np.array_equal(a, b)


def test_generate_json_and_gallery_commands(home, tmp_path, capsys):
    code, out, _ = run(capsys, "generate", "a rocket", *FAST, "-n", "2", "--seed", "1", "-o", str(tmp_path), "--json")
    results = json.loads(out)
    assert code == 0 and len(results) == 2 and all(os.path.exists(r["path"]) for r in results)
    code, out, _ = run(capsys, "history")
    assert code == 0 and out.count("a rocket") == 2
    code, out, _ = run(capsys, "history", "--json", "--search", "rocket")
    assert len(json.loads(out)) == 2
    code, out, _ = run(capsys, "show", results[0]["id"], "--json")
    assert code == 0 and json.loads(out)["record"]["seed"] == results[0]["record"]["seed"]
    code, _, err = run(capsys, "show", "ffffffffffff")
    assert code == 2 and "no image with id" in err


def test_models_list_and_show(home, capsys):
    code, out, _ = run(capsys, "models", "list", "--json")
    models = {m["id"]: m for m in json.loads(out)}
    assert code == 0 and models["dbx-base-v2"]["default"] and models["dbx-base-v1"]["builtin"]
    assert models["tiny-test"]["kind"] == "diffusion" and not models["tiny-test"]["builtin"]
    code, out, _ = run(capsys, "models", "list")
    assert "dbx-base-v2*" in out and "tiny-test" in out
    code, out, _ = run(capsys, "models", "show", "tiny-test", "--json")
    assert json.loads(out)["native_size"] == [16, 16]
    code, _, err = run(capsys, "models", "show", "nope")
    assert code == 2 and "installed models" in err


@pytest.mark.parametrize("argv, fragment", [
    (["--sampler", "plms"], "valid samplers: euler, euler_a, heun, dpmpp_2m, dpmpp_2m_sde, ddim"),
    (["--style", "baroque"], "valid styles"),
    (["--preset", "myspace"], "valid size presets"),
    (["--size", "100x64"], "100 is not a multiple of 8"),
    (["--steps", "0"], "steps: Input should be greater than or equal to 1"),
    (["--model", "sd-99"], "unknown model 'sd-99'"),
])
def test_bad_options_exit_2_with_a_clear_message(home, tmp_path, capsys, argv, fragment):
    code, out, err = run(capsys, "generate", "a rocket", "--model", "tiny-test", *argv, "-o", str(tmp_path / "o"))
    assert code == 2 and fragment in err and out == ""
    assert not (tmp_path / "o").exists()


def test_unwritable_output_fails_before_work(home, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "file").write_text("x")
    code, _, err = run(capsys, "generate", "a rocket", *FAST, "-o", str(locked / "file" / "out.png"))
    assert code == 2 and "cannot write to" in err
    code, _, err = run(capsys, "generate", "a rocket", *FAST, "-n", "2", "-o", str(tmp_path / "x.jpg"))
    assert code == 2 and "must be a folder" in err


def test_corrupt_model_file_gives_a_clear_error(home, tmp_path, capsys):
    weights = home / "models" / "tiny-test" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    code, _, err = run(capsys, "generate", "a rocket", *FAST, "-o", str(tmp_path))
    assert code == 2 and "truncated" in err
    assert list(tmp_path.glob("*.png")) == []


def test_sheet_draws_one_row_per_prompt(home, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red apple\n# a comment\na rocket\n")
    code, out, _ = run(capsys, "sheet", str(prompts), *FAST, "--columns", "2", "-o", str(tmp_path / "sheet.png"))
    assert code == 0
    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.width > 2 * 128 and sheet.height >= 2 * 128


def test_info_on_a_plain_png(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    code, _, err = run(capsys, "info", str(tmp_path / "plain.png"))
    assert code == 2 and "carries no DesignerBox record" in err


def test_installed_entry_point_runs(home, tmp_path):
    exe = shutil.which("designerbox", path=os.path.dirname(sys.executable))
    assert exe, "the designerbox console script is installed beside the interpreter"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([exe, "generate", "a star", *FAST, "--seed", "2", "-o", str(tmp_path / "s.png")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "s.png")
