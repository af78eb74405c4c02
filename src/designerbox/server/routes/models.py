"""Installed models: list and describe (what each is good at, defaults, model card)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from designerbox.registry.discovery import DEFAULT_MODEL
from designerbox.registry.licences import flag
from designerbox.registry.manifest import KINDS, ModelManifest
from designerbox.server.deps import StudioDep
from designerbox.server.schemas import ModelList, ModelPublic
from designerbox.server.submit import InvalidRequest

router = APIRouter(prefix="/models", tags=["models"])


def model_public(m: ModelManifest, card: bool = False) -> ModelPublic:
    text = None
    if card and m.card and (m.folder / m.card).is_file():
        text = (m.folder / m.card).read_text()
    lic = flag(m.licence)
    return ModelPublic(id=m.id, name=m.name, kind=m.kind, family=m.family, description=m.description,
                       good_at=m.good_at, licence=m.licence, licence_name=lic["licence_name"],
                       commercial_use=lic["commercial_use"], licence_condition=lic["condition"], native_size=m.native_size, default_size=m.default_size,
                       defaults=m.defaults.model_dump() if m.defaults else None,
                       text_to_image=m.kind == "gan" or (m.kind == "diffusion" and m.defaults is not None),
                       default=m.id == DEFAULT_MODEL, builtin=m.builtin, hash=m.short_hash, card=text)


@router.get("", response_model=ModelList, summary="Installed models")
def list_models(studio: StudioDep, kind: Annotated[str | None, Query(description=f"one of {', '.join(KINDS)}")] = None,
                text_to_image: bool | None = None) -> ModelList:
    if kind is not None and kind not in KINDS:
        raise InvalidRequest(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}", "kind")
    models = [model_public(m) for m in studio.registry.list(kind=kind)]
    if text_to_image is not None:
        models = [m for m in models if m.text_to_image == text_to_image]
    return ModelList(models=models)


@router.get("/{model_id}", response_model=ModelPublic, summary="One model, with its model card")
def get_model(model_id: str, studio: StudioDep) -> ModelPublic:
    return model_public(studio.registry.get(model_id), card=True)
