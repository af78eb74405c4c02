"""A second pass: each image of a request redrawn by another model (an SDXL refiner) as image to image."""

from __future__ import annotations

from typing import Callable

from designerbox.jobs.generate import GeneratedImage, run_generation
from designerbox.jobs.schema import GenerationRequest
from designerbox.registry.manifest import ModelManifest
from designerbox.store.png_metadata import png_bytes


def refine(images: list[GeneratedImage], manifest: ModelManifest, model,
           progress: Callable[[dict], None] | None = None) -> list[GeneratedImage]:
    """Redraw each image with a second model (an SDXL refiner: pipelines/stable_diffusion_xl.py) as image
    to image at the request's refiner_strength, with the first pass's prompts as the text encoder saw
    them (style applied, LoRA tags out), its seed, steps, sampler, schedule and guidance; the record is
    the first pass's with `refiner` added (model, hashes, strength, steps run, seconds)."""
    import base64
    import io

    from designerbox.pipelines.sampling import steps_for_strength

    out = []
    for first in images:
        r, cond = first.record["request"], first.record["conditioning"]
        buf = io.BytesIO()
        first.image.save(buf, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        sub = GenerationRequest(prompt=cond["prompt"], negative_prompt=cond["negative_prompt"] or "",
                                model=manifest.id, init_image=url, strength=r["refiner_strength"],
                                seed=first.record["seed"], steps=r["steps"], sampler=r["sampler"],
                                schedule=r["schedule"], cfg_scale=r["cfg_scale"])
        (second,) = run_generation(sub, manifest, model, progress=progress)
        record = dict(first.record, refiner={
            "id": manifest.id, "family": manifest.family, "sha256": manifest.weights_sha256,
            "hash": manifest.short_hash, "strength": r["refiner_strength"],
            "steps_run": steps_for_strength(r["steps"], r["refiner_strength"]), "seconds": second.record["seconds"]})
        record["seconds"] = round(first.record["seconds"] + second.record["seconds"], 3)
        out.append(GeneratedImage(image=second.image, record=record, png=png_bytes(second.image, record)))
    return out
