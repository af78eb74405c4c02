"""Drop-in compatibility, tested with the real client libraries against a real uvicorn server:
the OpenAI Python client (Images API) and webuiapi (A1111's API)."""

import base64
import io
import json
import threading
import time

import httpx
import pytest
from PIL import Image

from designerbox.server.app import create_app
from server_util import ThreadServer, settings


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ThreadServer(create_app(settings(tmp_path_factory.mktemp("compat-home")))) as s:
        yield s


@pytest.fixture
def openai_client(server):
    import openai

    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-needed-on-loopback", max_retries=0)


@pytest.fixture
def webui(server):
    import webuiapi

    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=2)


def test_openai_b64_json(openai_client):
    result = openai_client.images.generate(model="dbx-base-v1", prompt="a red apple", n=2, size="64x64",
                                           response_format="b64_json")
    assert len(result.data) == 2
    images = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in result.data]
    assert all(im.size == (64, 64) for im in images)
    records = [json.loads(im.text["designerbox"]) for im in images]
    assert {r["model"]["id"] for r in records} == {"dbx-base-v1"}
    assert records[1]["seed"] == records[0]["seed"] + 1   # one batch


def test_openai_url_and_openai_model_names(openai_client, server):
    result = openai_client.images.generate(model="dall-e-3", prompt="a blue star", size="32x32",
                                           response_format="url", quality="standard", style="vivid")
    url = result.data[0].url
    assert url.startswith(f"{server.url}/api/v1/images/") and url.endswith(".png")
    im = Image.open(io.BytesIO(httpx.get(url).content))
    assert json.loads(im.text["designerbox"])["model"]["id"] == "dbx-base-v2"  # OpenAI's names: the default model


def test_openai_errors_come_back_as_openai_errors(openai_client):
    import openai

    with pytest.raises(openai.BadRequestError) as err:
        openai_client.images.generate(model="dbx-nope", prompt="a cat")
    assert "unknown model 'dbx-nope'" in err.value.message and "dbx-base-v1" in err.value.message
    assert err.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError, match="size must be 'auto' or WIDTHxHEIGHT"):
        openai_client.images.generate(prompt="a cat", size="large")
    with pytest.raises(openai.BadRequestError, match="not a multiple of 8"):
        openai_client.images.generate(prompt="a cat", size="100x100")
    with pytest.raises(openai.BadRequestError, match="only 'png'"):
        openai_client.images.generate(prompt="a cat", output_format="jpeg")
    with pytest.raises(openai.BadRequestError, match="n: Input should be less than or equal to 16"):
        openai_client.images.generate(prompt="a cat", n=17)


def test_webuiapi_txt2img(webui):
    result = webui.txt2img(prompt="a yellow duck", negative_prompt="blurry", seed=42, width=32, height=32,
                           cfg_scale=5, sampler_name="DPM++ 2M", scheduler="Karras", batch_size=2)
    assert len(result.images) == 2 and result.image.size == (32, 32)
    assert result.info["all_seeds"] == [42, 43] and result.info["sd_model_name"] == "dbx-base-v2"
    assert result.info["sampler_name"] == "DPM++ 2M" and result.info["steps"] == 2
    assert "Seed: 42" in result.info["infotexts"][0] and "Schedule type: Karras" in result.info["infotexts"][0]
    record = json.loads(result.image.text["designerbox"])
    assert record["request"]["schedule"] == "karras" and record["request"]["cfg_scale"] == 5


def test_webuiapi_models_options_and_a_gan(webui):
    titles = webui.util_get_model_names()
    assert any(t.startswith("dbx-base-v1 [") for t in titles) and any(t.startswith("dbx-gan-v0") for t in titles)
    assert not any(t.startswith("dbx-eval") for t in titles)
    assert "Euler a" in webui.util_get_sampler_names()
    webui.util_set_model("dbx-gan-v0")            # POST /options sd_model_checkpoint
    assert webui.util_get_current_model().startswith("dbx-gan-v0")
    try:
        result = webui.txt2img(prompt="a green frog", seed=1)   # steps/sampler/cfg sent anyway: not used by a GAN
        assert result.image.size == (512, 512) and result.info["sd_model_name"] == "dbx-gan-v0"
        assert "not used" in result.info["note"]
    finally:
        webui.util_set_model("dbx-base-v1")


def test_webuiapi_errors_name_the_valid_choices(webui):
    with pytest.raises(RuntimeError) as err:
        webui.txt2img(prompt="a cat", sampler_name="Turbo", width=32, height=32)
    assert err.value.args[0] == 422 and "valid samplers: Euler, Euler a" in err.value.args[1]
    with pytest.raises(RuntimeError, match="the hires fix"):
        webui.txt2img(prompt="a cat", enable_hr=True, width=32, height=32)
    with pytest.raises(RuntimeError) as err:
        webui.txt2img(prompt="a cat", override_settings={"sd_model_checkpoint": "sd_xl_base_1.0.safetensors"})
    detail = json.loads(err.value.args[1])["detail"][0]
    assert detail["loc"] == ["body", "override_settings.sd_model_checkpoint"]
    assert detail["msg"].startswith("unknown model 'sd_xl_base_1.0'; text-to-image models here: dbx-base-v1")


def test_a1111_progress_while_a_job_runs(webui):
    idle = webui.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=webui.txt2img(prompt="a slow turtle", steps=150,
                                                                              width=32, height=32)))
    thread.start()
    seen = None
    deadline = time.monotonic() + 60
    while thread.is_alive() and time.monotonic() < deadline:
        p = webui.get_progress()
        if p["state"]["sampling_step"] >= 2 and p["current_image"]:
            seen = p
            break
        time.sleep(0.02)
    thread.join(120)
    assert seen is not None, "no progress seen while the job ran"
    assert 0 < seen["progress"] < 1 and seen["state"]["sampling_steps"] == 150
    assert Image.open(io.BytesIO(base64.b64decode(seen["current_image"]))).size == (32, 32)
    assert len(result["r"].images) == 1
