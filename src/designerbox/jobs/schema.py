"""The one request schema every front door uses (CLI, Python API, REST API, worker).

`GenerationRequest` is what a user asks for; fields left as None take the chosen model's
defaults when the request is resolved against its manifest (see jobs/generate.py), and the
resolved values are what every image's record stores. Some fields belong to one family:
steps, sampler, schedule, cfg_scale and negative_prompt to diffusion models, truncation to GANs;
naming one for a model of the other family is an error when the request is resolved.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SAMPLER_NAMES = ("euler", "euler_a", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddim")
SCHEDULE_NAMES = ("karras", "exponential", "simple")
MAX_SEED = 2**32 - 1
MAX_SIDE = 4096
MAX_IMAGE_FIELD = 40_000_000  # characters: a data URL of a ~30 MB image

Side = Annotated[int, Field(ge=16, le=MAX_SIDE, description="pixels, a multiple of 8")]
MAX_LORAS = 8


class LoraRef(BaseModel):
    """One LoRA of $DESIGNERBOX_HOME/loras, as `<lora:NAME:WEIGHT>` in a prompt names it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="file name in the loras folder, without .safetensors")
    weight: float = Field(1.0, ge=-10.0, le=10.0, allow_inf_nan=False, description="strength (1: as trained)")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        v = v.strip()
        if not v or "/" in v or "\\" in v or v.startswith(".") or any(c in v for c in "<>:"):
            raise ValueError(f"{v!r} is not a LoRA name: a file name in the loras folder without .safetensors, "
                             "with no folder part, no leading dot and no <, >, :")
        return v


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    prompt: str = Field(min_length=1, max_length=4000)
    negative_prompt: str = Field("", max_length=4000)
    model: str | None = Field(None, description="model id; the default model when omitted")
    width: Side | None = None
    height: Side | None = None
    size_preset: str | None = Field(None, description="a platform size id, instead of width/height")
    steps: int | None = Field(None, ge=1, le=150)
    sampler: str | None = None
    schedule: str | None = None
    cfg_scale: float | None = Field(None, ge=0.0, le=30.0, allow_inf_nan=False)
    truncation: float | None = Field(None, ge=0.0, le=2.0, allow_inf_nan=False,
                                     description="GANs only: truncation psi (1: none; lower: more typical images)")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="random when omitted; recorded")
    batch_size: int = Field(1, ge=1, le=16)
    style: str | None = Field(None, description="a style preset id")
    upscaler: str | None = Field(None, description="upscaler model id for sizes beyond what the model draws; "
                                 "'none' for plain resizing; omitted: the best one installed")
    init_image: str | None = Field(None, max_length=MAX_IMAGE_FIELD,
                                   description="image to image: a file path or a data URL "
                                   "(data:image/png;base64,...); the output size defaults to its size")
    mask_image: str | None = Field(None, max_length=MAX_IMAGE_FIELD,
                                   description="inpainting: white = repaint, black = keep (a path or data URL)")
    extend: tuple[int, int, int, int] | None = Field(None, description="outpainting: pixels to add to the "
                                                     "init_image's left, top, right and bottom (0 to 2048 each)")
    strength: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False,
                                   description="image to image: how much of the schedule runs (default 0.75; "
                                   "1.0 with a mask)")
    outpaint_to: str | None = Field(None, description="outpainting to a platform size: the init_image is extended "
                                    "to the aspect of this size preset (the new border drawn), then resized to it")
    refiner: str | None = Field(None, description="a second model (e.g. an SDXL refiner) that redraws each image "
                                "as image to image, after the model")
    refiner_strength: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False,
                                           description="the refiner's share of the schedule (default 0.25)")
    loras: list[LoraRef] = Field([], max_length=MAX_LORAS,
                                 description="LoRAs to apply, as <lora:NAME:WEIGHT> tags in the prompt would "
                                 "(Stable Diffusion models); applied after the prompt's own tags")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the prompt is empty")
        return v.strip()

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, v: str | None) -> str | None:
        if v is not None and v not in SAMPLER_NAMES:
            raise ValueError(f"unknown sampler {v!r}; valid samplers: {', '.join(SAMPLER_NAMES)}")
        return v

    @field_validator("schedule")
    @classmethod
    def _known_schedule(cls, v: str | None) -> str | None:
        if v is not None and v not in SCHEDULE_NAMES:
            raise ValueError(f"unknown schedule {v!r}; valid schedules: {', '.join(SCHEDULE_NAMES)}")
        return v

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, v: int | None) -> int | None:
        if v is not None and v % 8:
            raise ValueError(f"{v} is not a multiple of 8 (try {v // 8 * 8} or {v // 8 * 8 + 8})")
        return v

    @model_validator(mode="after")
    def _one_way_to_size(self) -> "GenerationRequest":
        if self.size_preset is not None and (self.width is not None or self.height is not None):
            raise ValueError("give either size_preset or width/height, not both")
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither")
        if self.init_image is None and (self.mask_image is not None or self.strength is not None or self.extend
                                        or self.outpaint_to):
            raise ValueError("mask_image, extend, outpaint_to and strength need an init_image to work on")
        if self.refiner_strength is not None and self.refiner is None:
            raise ValueError("refiner_strength needs a refiner (a model id)")
        if self.outpaint_to is not None:
            clash = [k for k in ("extend", "mask_image", "size_preset", "width") if getattr(self, k) is not None]
            if clash:
                raise ValueError(f"outpaint_to sets the border, the mask and the output size; leave out "
                                 f"{', '.join('width/height' if k == 'width' else k for k in clash)}")
        if self.extend is not None:
            if self.mask_image is not None:
                raise ValueError("give either extend (outpainting: the mask is the new border) or mask_image, not both")
            if any(not 0 <= e <= 2048 for e in self.extend) or not any(self.extend):
                raise ValueError(f"extend needs four sizes from 0 to 2048 (left, top, right, bottom), not all 0; "
                                 f"got {list(self.extend)}")
        return self


class ResolvedRequest(BaseModel):
    """A request with every default filled in from the model manifest: what actually ran."""

    model_config = ConfigDict(protected_namespaces=())

    prompt: str
    negative_prompt: str
    model: str
    width: int
    height: int
    size_preset: str | None
    steps: int | None          # None for GANs (one network call)
    sampler: str | None
    schedule: str | None
    cfg_scale: float | None
    truncation: float | None = None  # GANs only
    seed: int
    batch_size: int
    style: str | None
    upscaler: str = "none"
    init_image: dict | None = None   # what the input was (file, sha256, size, notes), not its pixels
    mask_image: dict | None = None
    extend: tuple[int, int, int, int] | None = None
    strength: float | None = None
    outpaint_to: str | None = None
    refiner: str | None = None
    refiner_strength: float | None = None
    loras: list[LoraRef] = []
