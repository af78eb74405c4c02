"""Product knobs as data: style presets and platform sizes, validated and addressed by id."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from pydantic import BaseModel, Field, field_validator


class StylePreset(BaseModel):
    id: str
    name: str
    prompt: str = Field(description="template; {prompt} is replaced by the user's prompt")
    negative: str = ""

    @field_validator("prompt")
    @classmethod
    def _has_slot(cls, v: str) -> str:
        if "{prompt}" not in v:
            raise ValueError("a style template must contain {prompt}")
        return v

    def apply(self, prompt: str, negative: str) -> tuple[str, str]:
        joined = ", ".join(p for p in (negative, self.negative) if p)
        return self.prompt.replace("{prompt}", prompt), joined


class SizePreset(BaseModel):
    id: str
    name: str
    width: int = Field(ge=16, le=4096)
    height: int = Field(ge=16, le=4096)


class UnknownPresetError(ValueError):
    pass


def _read(name: str) -> dict:
    return json.loads(resources.files(__package__).joinpath(name).read_text())


@lru_cache(maxsize=1)
def styles() -> dict[str, StylePreset]:
    return {s["id"]: StylePreset(**s) for s in _read("styles.json")["styles"]}


@lru_cache(maxsize=1)
def sizes() -> dict[str, SizePreset]:
    return {s["id"]: SizePreset(**s) for s in _read("sizes.json")["sizes"]}


def get_style(style_id: str) -> StylePreset:
    table = styles()
    if style_id not in table:
        raise UnknownPresetError(f"unknown style {style_id!r}; valid styles: {', '.join(table)}")
    return table[style_id]


def get_size(size_id: str) -> SizePreset:
    table = sizes()
    if size_id not in table:
        raise UnknownPresetError(f"unknown size preset {size_id!r}; valid size presets: {', '.join(table)}")
    return table[size_id]
