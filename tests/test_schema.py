import pytest
from pydantic import ValidationError

from designerbox.jobs.schema import SAMPLER_NAMES, GenerationRequest


def error_text(**fields) -> str:
    with pytest.raises(ValidationError) as info:
        GenerationRequest(**fields)
    return str(info.value)


def test_defaults_are_open_until_resolved():
    r = GenerationRequest(prompt="  a red apple ")
    assert r.prompt == "a red apple"
    assert (r.model, r.steps, r.sampler, r.seed, r.batch_size) == (None, None, None, None, 1)


def test_unknown_sampler_lists_valid_ones():
    text = error_text(prompt="x", sampler="dpm_fast")
    assert "unknown sampler 'dpm_fast'" in text
    for name in SAMPLER_NAMES:
        assert name in text


def test_unknown_schedule_lists_valid_ones():
    text = error_text(prompt="x", schedule="linear")
    assert "karras" in text and "exponential" in text and "simple" in text


@pytest.mark.parametrize("fields, fragment", [
    ({"prompt": "   "}, "the prompt is empty"),
    ({"prompt": ""}, "at least 1 character"),
    ({"prompt": "x", "width": 100, "height": 64}, "100 is not a multiple of 8"),
    ({"prompt": "x", "width": 64}, "give both width and height"),
    ({"prompt": "x", "width": 8192, "height": 64}, "less than or equal to 4096"),
    ({"prompt": "x", "size_preset": "x-post", "width": 64, "height": 64}, "either size_preset or width/height"),
    ({"prompt": "x", "steps": 0}, "greater than or equal to 1"),
    ({"prompt": "x", "steps": 1000}, "less than or equal to 150"),
    ({"prompt": "x", "cfg_scale": -1}, "greater than or equal to 0"),
    ({"prompt": "x", "seed": -5}, "greater than or equal to 0"),
    ({"prompt": "x", "seed": 2**40}, "less than or equal to 4294967295"),
    ({"prompt": "x", "batch_size": 64}, "less than or equal to 16"),
    ({"prompt": "x", "colour": "red"}, "Extra inputs are not permitted"),
])
def test_bad_fields_are_named(fields, fragment):
    assert fragment in error_text(**fields)


def test_schema_is_json_serialisable_for_every_front_door():
    schema = GenerationRequest.model_json_schema()
    assert {"prompt", "negative_prompt", "model", "width", "height", "steps", "sampler", "schedule", "cfg_scale",
            "seed", "batch_size", "style", "size_preset"} <= set(schema["properties"])
