"""Style presets and platform sizes (data in designerbox/presets/*.json)."""

from __future__ import annotations

from fastapi import APIRouter

from designerbox import presets

router = APIRouter(prefix="/presets", tags=["presets"])


@router.get("", summary="Style presets and platform sizes")
def list_presets() -> dict:
    return {"styles": [s.model_dump() for s in presets.styles().values()],
            "sizes": [s.model_dump() for s in presets.sizes().values()]}


@router.get("/styles", summary="Style presets")
def list_styles() -> list[dict]:
    return [s.model_dump() for s in presets.styles().values()]


@router.get("/sizes", summary="Platform sizes")
def list_sizes() -> list[dict]:
    return [s.model_dump() for s in presets.sizes().values()]
