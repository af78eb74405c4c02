"""The Python API: `designerbox.generate(prompt, **options)` for notebooks and scripts."""

from __future__ import annotations

from designerbox.jobs.generate import GeneratedImage
from designerbox.jobs.schema import GenerationRequest
from designerbox.studio import Studio


def generate(prompt: str, *, studio: Studio | None = None, progress=None, save: bool = True,
             **options) -> list[GeneratedImage]:
    """Generate images; options are the fields of GenerationRequest (model, width, height, steps,
    sampler, schedule, cfg_scale, seed, batch_size, style, negative_prompt, size_preset; truncation
    for GANs).

    Each result has `.image` (PIL), `.record` (what made it) and `.png` (bytes with metadata).
    Pass a `Studio` to reuse loaded models across calls; otherwise one is built from the
    environment (DESIGNERBOX_HOME, DESIGNERBOX_DEVICE) for this call.
    """
    request = GenerationRequest(prompt=prompt, **options)
    return (studio or Studio()).generate(request, progress=progress, save=save)
