"""The Studio: registry, model cache and gallery wired together from settings.

The CLI, the Python API and (later) the server and workers each build one and pass it down;
nothing here is global.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from designerbox.jobs.generate import GeneratedImage, RequestError, run_generation
from designerbox.jobs.refine import refine
from designerbox.jobs.schema import GenerationRequest
from designerbox.registry.cache import ModelCache
from designerbox.registry.discovery import Registry
from designerbox.registry.loading import load_model
from designerbox.settings import Settings
from designerbox.store.gallery import Gallery, open_gallery


PREFERRED_UPSCALERS = ("esrgan-medium-x4", "esrgan-slim-x4")


class Studio:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.registry = Registry(self.settings.home)
        self.cache = ModelCache(self.settings.cache_mb * 2**20)
        self.device = self.settings.resolve_device()
        self._gallery: Gallery | None = None

    @property
    def gallery(self) -> Gallery:
        if self._gallery is None:  # created on first use: listing models touches no database
            self._gallery = open_gallery(self.settings)
        return self._gallery

    def model(self, model_id: str | None):
        """(manifest, loaded model); a model that cannot fit in the cache's budget or the device's free
        memory is refused before loading (registry.memory: ModelTooLargeError, naming sizes and what to try)."""
        import os

        from designerbox.pipelines.offload import offload_mode
        from designerbox.registry.memory import estimate_bytes, free_bytes

        manifest = self.registry.get(model_id)
        key = (manifest.id, self.device)
        if key in self.cache:  # loaded: no headers to read
            return manifest, self.cache.get(key, lambda: load_model(manifest, self.device))
        # offloaded networks wait in CPU memory (the loader reads the same setting): RAM must hold them all
        offloaded = offload_mode(os.environ.get("DESIGNERBOX_OFFLOAD") or manifest.offload) == "model"
        return manifest, self.cache.get(key, lambda: load_model(manifest, self.device),
                                        need=estimate_bytes(manifest, self.device),
                                        free=lambda: free_bytes("cpu" if offloaded else self.device))

    def upscaler(self, choice: str | None):
        """(manifest, network) of the upscaler a request asks for; None for "none" or when none is installed.

        choice None picks the first installed of PREFERRED_UPSCALERS, else any installed upscaler."""
        if choice == "none":
            return None
        installed = {m.id: m for m in self.registry.list(kind="upscaler")}
        if choice is None:
            if not installed:
                return None
            choice = next((u for u in PREFERRED_UPSCALERS if u in installed), next(iter(installed)))
        elif choice not in installed:
            self.registry.get(choice)  # unknown ids raise with the installed models listed
            raise RequestError(f"model {choice!r} is not an upscaler; installed upscalers: "
                               f"{', '.join(installed) or 'none (see `designerbox assets list`)'}, or 'none'")
        return self.model(choice)

    def generate(self, request: GenerationRequest, progress: Callable[[dict], None] | None = None,
                 save: bool = True, drawer: Callable | None = None) -> list[GeneratedImage]:
        """Run one request; every image goes into the gallery unless save is False. drawer: see
        jobs.generate.run_generation (the server's batched draws)."""
        import torch

        from designerbox.registry.memory import out_of_memory

        manifest, model = self.model(request.model)
        if save and self.settings.c2pa:  # an unusable signing certificate is named before the drawing, not after
            from designerbox.store.content_credentials import signing_identity

            signing_identity(self.settings)
        try:
            images = run_generation(request, manifest, model, progress=progress,
                                    upscaler=self.upscaler(request.upscaler), lora_home=self.settings.home,
                                    drawer=drawer)
            if request.refiner:  # a second pass, image to image, with the refiner (e.g. SDXL's)
                refiner_manifest, refiner = self.model(request.refiner)
                images = refine(images, refiner_manifest, refiner, progress=progress)
        except torch.cuda.OutOfMemoryError:
            size = f"{request.width}x{request.height}" if request.width else request.size_preset or "the default size"
            raise out_of_memory(manifest.id, self.device, f"drawing {request.batch_size} image(s) at {size}") from None
        if save:
            for img in images:
                row = self.gallery.add(img.png, img.record)
                img.id, img.path = row.id, str(self.gallery.file(row))
        return images

    def export(self, images: list[GeneratedImage], out: Path) -> list[Path]:
        """Write images to a file (one image) or into a folder, atomically; returns the paths."""
        from designerbox.store.png_metadata import write_atomic

        out = Path(out)
        if out.suffix.lower() == ".png" and len(images) == 1:
            targets = [out]
        elif out.suffix:
            raise ValueError(f"output path {out} must be a folder, or a .png file for a single image")
        else:
            targets = [out / f"{img.record['created'][:10]}-{img.id or 'img'}-{img.record['seed']}.png" for img in images]
        targets[0].parent.mkdir(parents=True, exist_ok=True)
        for img, target in zip(images, targets):
            write_atomic(target, img.png)
            img.path = str(target)
        return targets
