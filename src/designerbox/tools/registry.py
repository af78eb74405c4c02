"""The creation tools, addressed by name, and their presets (data files validated by each tool's options).

A tool is a module in `designerbox.tools` that defines `TOOL = Tool(...)`:
    name, version   what records say made an image
    options         a pydantic model (extra fields forbidden): the tool's knobs, validated at the boundary
    run             run(image, options) -> list[ToolImage]: one upright RGB(A) image in, named images out
    presets         `presets/tool_<name>.json`: {"presets": [{"id", "name", "options": {...}}]}
    prompt_field    the option that holds a prompt, when the tool can start from a generated image
    uses_models     run(image, options, ctx) instead: ctx (a ToolContext, built by the job from the
                    Studio) gives installed models and the generation path (enhance, style); or a
                    function of the options saying when it does (product: only to draw a scene_prompt;
                    social: only to outpaint)

Importing this module imports no tool; `get_tool` imports the one asked for.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Protocol

from PIL import Image
from pydantic import BaseModel

from designerbox.presets import UnknownPresetError

TOOL_MODULES = {
    "product": "designerbox.tools.product",
    "social": "designerbox.tools.social",
    "marketing": "designerbox.tools.marketing",
    "enhance": "designerbox.tools.enhance",
    "style": "designerbox.tools.style",
    "headshot": "designerbox.tools.headshot",
    "avatar": "designerbox.tools.avatar",
}


class UnknownToolError(ValueError):
    pass


@dataclass
class ToolImage:
    name: str                                     # e.g. "amazon", "instagram-post": the output's label
    image: Image.Image
    details: dict = field(default_factory=dict)   # what the tool found and did (boxes, ratios...), recorded


class ToolContext(Protocol):
    """What a tool with `uses_models` may use beyond its input; jobs/tool.py builds it from the Studio."""

    def installed(self, kind: str, families: tuple[str, ...] | None = None) -> list[str]:
        """Ids of the installed models of a kind ("upscaler", "filter", "diffusion"...), of those families if given."""

    def model(self, model_id: str) -> tuple[Any, Any]:
        """(manifest, loaded model) of an installed model, cached by the Studio; errors list the installed ones."""

    def img2img(self, image: Image.Image, *, prompt: str, model: str, strength: float, style: str | None = None,
                negative_prompt: str = "", seed: int | None = None) -> tuple[Image.Image, dict]:
        """The generation path on an init image (as `generate --init-image`): the image and its record."""

    def outpaint(self, image: Image.Image, extend: tuple[float, float, float, float], *, prompt: str, model: str,
                 seed: int | None = None, negative_prompt: str = "", side: int | None = None) -> tuple[Image.Image, dict]:
        """The generation path's outpainting: the image on a canvas larger by extend (left, top, right, bottom,
        image pixels), the border drawn; scaled to what the model draws (long side `side`, default 1.5x the
        model's native side). (canvas, record); the record's
        "outpaint" gives the canvas size, the picture's place in it [left, top, w, h], extend and scale."""

    def txt2img(self, prompt: str, *, model: str | None = None, width: int | None = None, height: int | None = None,
                seed: int | None = None, style: str | None = None, negative_prompt: str = "") -> tuple[Image.Image, dict]:
        """The generation path from a prompt (as `generate`; model None: the default model): image and record."""


@dataclass(frozen=True)
class Tool:
    name: str
    version: str
    summary: str
    options: type[BaseModel]
    run: Callable[..., list[ToolImage]]           # run(image, options), or run(image, options, ctx)
    prompt_field: str | None = None
    uses_models: bool | Callable[[BaseModel], bool] = False  # or a test of the options (product: a scene_prompt)

    @property
    def preset_file(self) -> str:
        return f"tool_{self.name}.json"

    def presets(self) -> dict[str, dict]:
        return tool_presets(self.name)

    def resolve(self, options: dict | None = None, preset: str | None = None) -> BaseModel:
        """The options model from a preset's options overlaid by explicit ones; errors name the valid choices."""
        merged = {}
        if preset is not None:
            table = self.presets()
            if preset not in table:
                raise UnknownPresetError(f"unknown preset {preset!r} for the {self.name} tool; valid presets: "
                                         f"{', '.join(table)}")
            merged.update(table[preset]["options"])
        merged.update(options or {})
        return self.options(**merged)

    def sha256(self) -> str:
        """The hash of what makes this tool's images: its module's source and its preset file."""
        h = hashlib.sha256(inspect.getsource(inspect.getmodule(self.run)).encode())
        h.update(resources.files("designerbox.presets").joinpath(self.preset_file).read_bytes())
        return h.hexdigest()


def get_tool(name: str) -> Tool:
    if name not in TOOL_MODULES:
        raise UnknownToolError(f"unknown tool {name!r}; valid tools: {', '.join(TOOL_MODULES)}")
    return importlib.import_module(TOOL_MODULES[name]).TOOL


def tools() -> list[Tool]:
    return [get_tool(n) for n in TOOL_MODULES]


@lru_cache(maxsize=None)
def tool_presets(name: str) -> dict[str, dict]:
    """{preset id: {"id", "name", "options"}}; every preset is validated by the tool's options model."""
    tool = get_tool(name)
    data = json.loads(resources.files("designerbox.presets").joinpath(tool.preset_file).read_text())
    table = {}
    for p in data["presets"]:
        tool.options(**p["options"])  # a bad preset file fails here, naming the field
        table[p["id"]] = p
    return table
