"""Request options of the Stable Diffusion families on the tiny random-weight SD 1.5 checkpoint of
test_stable_diffusion.py: LoRAs by an API field, outpainting to a platform size, clear errors when a
model cannot fit, CPU offload."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_stable_diffusion import NEGATIVE, PROMPT, SIZE, _add, _write_lora, tiny_sd  # noqa: F401 (fixture)


def _studio():
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    return Studio(Settings.from_env())


def _request(**kw):
    from designerbox.jobs.schema import GenerationRequest

    base = dict(prompt=PROMPT, model="tiny-folder", steps=2, sampler="euler", schedule="karras", cfg_scale=5.0,
                width=SIZE, height=SIZE, seed=3)
    return GenerationRequest(**(base | kw))


# --- LoRA by the request's `loras` field ------------------------------------------------------------------

def test_the_loras_field_equals_the_prompt_tag(tiny_sd, sd_home, capsys):
    from designerbox.jobs.generate import RequestError

    _add([tiny_sd[0], "--id", "tiny-folder"], capsys)
    _write_lora(sd_home / "loras" / "style.safetensors")
    _write_lora(sd_home / "loras" / "grain.safetensors", seed=1)
    studio = _studio()
    plain = studio.generate(_request(), save=False)[0]
    tag = studio.generate(_request(prompt=f"{PROMPT} <lora:style:0.8> <lora:grain:-0.5>"), save=False)[0]
    field = studio.generate(_request(loras=[{"name": "style", "weight": 0.8}, {"name": "grain", "weight": -0.5}]),
                            save=False)[0]
    mixed = studio.generate(_request(prompt=f"{PROMPT} <lora:style:0.8>", loras=[{"name": "grain", "weight": -0.5}]),
                            save=False)[0]
    a, b, c, d = (np.asarray(g.image).astype(int) for g in (plain, tag, field, mixed))
    assert np.abs(b - a).max() > 0
    assert np.array_equal(b, c) and np.array_equal(b, d)
    assert field.record["loras"] == tag.record["loras"] == mixed.record["loras"]
    assert [(x["name"], x["strength"]) for x in field.record["loras"]] == [("style", 0.8), ("grain", -0.5)]
    assert field.record["request"]["loras"] == [{"name": "style", "weight": 0.8}, {"name": "grain", "weight": -0.5}]
    assert field.record["conditioning"]["prompt"] == PROMPT
    again = studio.generate(_request(), save=False)[0]  # taken out for the next request
    assert np.array_equal(np.asarray(again.image).astype(int), a)
    # the record reproduces the image, LoRAs included
    from designerbox.jobs.generate import request_from_record

    req, _ = request_from_record(field.record)
    assert np.array_equal(np.asarray(studio.generate(req, save=False)[0].image).astype(int), c)
    with pytest.raises(RequestError, match="no LoRA named 'nope'.*grain, style"):
        studio.generate(_request(loras=[{"name": "nope"}]), save=False)


@pytest.mark.parametrize("lora, message", [
    ({"name": "../models/x"}, "is not a LoRA name"),
    ({"name": ".hidden"}, "is not a LoRA name"),
    ({"name": "a:b"}, "is not a LoRA name"),
    ({"name": "style", "weight": float("nan")}, "finite number"),
    ({"name": "style", "weight": 11}, "less than or equal to 10"),
    ({"name": "style", "strength": 1}, "Extra inputs"),
])
def test_the_loras_field_is_validated(lora, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        _request(loras=[lora])


def test_the_lora_cli_option(tiny_sd, sd_home, tmp_path, capsys):
    from designerbox.cli import main

    _add([tiny_sd[0], "--id", "tiny-folder"], capsys)
    _write_lora(sd_home / "loras" / "style.safetensors")
    args = ["--model", "tiny-folder", "--steps", "2", "--sampler", "euler", "--size", f"{SIZE}x{SIZE}", "--seed", "3",
            "--json", "--no-gallery"]
    assert main(["generate", PROMPT, "--lora", "style:0.8", "-o", str(tmp_path / "a"), *args]) == 0
    by_option = json.loads(capsys.readouterr().out)[0]
    assert main(["generate", f"{PROMPT} <lora:style:0.8>", "-o", str(tmp_path / "b"), *args]) == 0
    by_tag = json.loads(capsys.readouterr().out)[0]
    assert by_option["record"]["loras"] == by_tag["record"]["loras"]
    assert np.array_equal(np.asarray(Image.open(by_option["path"])), np.asarray(Image.open(by_tag["path"])))
