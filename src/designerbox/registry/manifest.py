"""Model manifests: what a model is, what it is good at, how to run it, and its files with hashes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

KINDS = ("diffusion", "gan", "upscaler", "filter", "style", "detector", "segmenter", "evaluator")


class ModelFile(BaseModel):
    path: str = Field(description="relative to the model folder")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class SamplingDefaults(BaseModel):
    sampler: str
    schedule: str
    steps: int = Field(ge=1, le=150)
    cfg_scale: float = Field(ge=0, le=30)


class ModelManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")
    name: str
    family: str = Field(description="architecture family, e.g. dbx-pixel-unet, sd15, sdxl")
    kind: Literal[KINDS]
    description: str = ""
    good_at: list[str] = []
    licence: str
    native_size: tuple[int, int] | None = Field(None, description="(width, height) a diffusion or GAN model was "
                                                "trained at; required for those kinds")
    scale: int | None = Field(None, ge=1, le=16, description="upscalers: output side / input side; required for them")
    min_size: int = Field(16, description="smallest side it draws directly")
    max_size: int = Field(4096, description="largest side it draws directly; larger is drawn natively and resized")
    size_multiple: int = 8
    default_size: tuple[int, int] | None = Field(None, description="output size when a request names none")
    prediction: Literal["eps", "v", "flow"] | None = None
    text_encoder: str | None = None
    defaults: SamplingDefaults | None = None
    truncation: float | None = Field(None, ge=0, le=2, description="GANs: the default truncation psi (1: none)")
    offload: Literal["none", "model"] | None = Field(None, description="diffusion models: 'model' keeps the networks "
                                                     "in CPU memory, each on the GPU only while it runs (large "
                                                     "models); DESIGNERBOX_OFFLOAD overrides it")
    files: list[ModelFile] = []
    card: str | None = Field(None, description="model card, relative to the model folder")

    _folder: Path | None = PrivateAttr(None)
    _builtin: bool = PrivateAttr(False)

    @model_validator(mode="after")
    def _kind_fields(self) -> "ModelManifest":
        if self.kind in ("diffusion", "gan") and self.native_size is None:
            raise ValueError(f"a {self.kind} model needs native_size, the (width, height) it was trained at")
        if self.kind == "upscaler" and self.scale is None:
            raise ValueError("an upscaler needs scale, its output side divided by its input side (e.g. 4)")
        return self

    @property
    def folder(self) -> Path:
        if self._folder is None:
            raise RuntimeError(f"manifest {self.id} was not read from a folder")
        return self._folder

    @property
    def builtin(self) -> bool:
        return self._builtin

    @property
    def weights_sha256(self) -> str:
        """sha256 of the main weights file (the first listed): the hash images record."""
        return self.files[0].sha256 if self.files else ""

    @property
    def short_hash(self) -> str:
        """A1111's AutoV2 style: the first 10 hex digits of the weights file's sha256."""
        return self.weights_sha256[:10]

    @classmethod
    def read(cls, folder: Path, builtin: bool = False) -> "ModelManifest":
        m = cls.model_validate_json((folder / "manifest.json").read_text())
        m._folder, m._builtin = folder, builtin
        return m
