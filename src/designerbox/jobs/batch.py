"""Several generation jobs in one batched network call, each keeping the images it would draw alone.

The server's worker takes queued jobs that share what the sampling loop needs to be identical (model,
drawn size, steps, sampler, schedule, cfg: `batch_key`) and runs each through the usual
`run_generation` (in a thread of its own), with a `DrawBatch` member as its drawer. A member's
drawer makes that job's conditions (its prompt, negative prompt, style, embeddings) and waits; the
worker then calls `DrawBatch.run()`, which draws every member in one `pipelines.sampling.draw`:

    rows      each job's images, its seeds as alone (seed, seed+1, ...): initial noise per image
    cond      each job's (cond, uncond) stacked along the batch (sampling.stack_conditions)
    noise     ancestral samplers draw each job's fresh noise from its own generator (seeded by its
              first seed, as alone), so pixels match a lone run (within float rounding of batching)
    callback  each step fans out to the jobs' own callbacks on their rows (progress, previews,
              cancel); a job whose callback raises (cancelled) drops out: its rows are still computed
              to the end of this draw but its drawer raises, the others go on; when every member
              has dropped out the draw stops
    result    each job gets its rows back and finishes in its own thread (upscaling, records)

Members whose draw arguments differ (an image-to-image input, other sizes) or whose conditions
cannot be stacked are drawn in groups of their own: batching never changes what a job draws.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

import torch

from designerbox.pipelines.sampling import draw, stack_conditions

# the request fields whose values a batch may mix (the rest, when set, must be absent: images, LoRAs...)
BATCHABLE_FIELDS = {"prompt", "negative_prompt", "model", "width", "height", "size_preset", "steps", "sampler",
                    "schedule", "cfg_scale", "seed", "batch_size", "style", "upscaler"}


def batch_key(request: dict, registry) -> tuple | None:
    """What jobs must share to be drawn in one network call, from a queued request (its JSON), or None
    for a job that runs alone (a GAN, an input image, LoRAs, a field this does not know)."""
    from designerbox.jobs.generate import draw_size, resolve
    from designerbox.jobs.schema import GenerationRequest

    if set(request) - BATCHABLE_FIELDS or "<lora:" in request.get("prompt", ""):
        return None
    try:
        req = GenerationRequest(**request)
        manifest = registry.get(req.model)
        if manifest.kind != "diffusion":
            return None
        r = resolve(req, manifest)
    except (ValueError, KeyError):  # a request that will fail: it fails alone
        return None
    return (manifest.id, *draw_size(r, manifest), r.steps, r.sampler, r.schedule, r.cfg_scale)


class _Dropped(Exception):
    """Every member of a group dropped out: the draw stops."""


@dataclass
class Member:
    index: int
    arrived: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    model: object = None
    key: tuple | None = None
    seeds: list[int] = field(default_factory=list)
    conditions: tuple[dict, dict] | None = None
    callback: Callable | None = None
    kwargs: dict = field(default_factory=dict)
    images: torch.Tensor | None = None
    error: BaseException | None = None


class DrawBatch:
    """The rendezvous of `n` jobs' draws (see the module's docstring)."""

    def __init__(self, n: int):
        self.members = [Member(i) for i in range(n)]
        self.groups: list[list[int]] = []  # the network calls made, as lists of member indices

    def drawer(self, index: int) -> Callable:
        m = self.members[index]

        def draw_member(model, prompt, negative_prompt, *, width, height, steps, sampler, schedule, cfg_scale,
                        seeds, callback=None, **image_inputs):
            m.model, m.seeds, m.callback = model, list(seeds), callback
            m.kwargs = dict(width=width, height=height, steps=steps, sampler=sampler, schedule=schedule,
                            cfg_scale=cfg_scale)
            if image_inputs:  # not batchable: drawn alone, by its own call, once the batch runs
                m.kwargs.update(image_inputs, prompt=prompt, negative_prompt=negative_prompt)
            else:
                m.conditions = model.conditions(prompt, negative_prompt, len(seeds), width, height)
                shapes = tuple((k, tuple(v.shape[1:])) for k, v in sorted(m.conditions[0].items())
                               if isinstance(v, torch.Tensor))
                m.key = (id(model), width, height, steps, sampler, schedule, cfg_scale, shapes)
            m.arrived.set()
            m.done.wait()
            if m.error is not None:
                raise m.error
            return m.images

        return draw_member

    def wait_arrival(self, index: int, thread: threading.Thread, poll: float = 0.05) -> bool:
        """Until member `index` waits in its drawer (True) or its thread has ended without drawing (False)."""
        m = self.members[index]
        while not m.arrived.wait(poll):
            if not thread.is_alive():
                return m.arrived.is_set()
        return True

    def run(self) -> None:
        """Draw every arrived member, one network call per group of stackable members; wake each."""
        arrived = [m for m in self.members if m.arrived.is_set()]
        groups: dict = {}
        for m in arrived:
            groups.setdefault(m.key if m.key is not None else ("alone", m.index), []).append(m)
        for group in groups.values():
            self.groups.append([m.index for m in group])
            try:
                if group[0].key is None:
                    m = group[0]
                    m.images = draw(m.model, seeds=m.seeds, callback=m.callback, **m.kwargs)
                else:
                    self._draw_group(group)
            except BaseException as err:  # noqa: BLE001 - every member of the group gets the error
                for m in group:
                    if m.error is None and m.images is None:
                        m.error = err
            finally:
                for m in group:
                    m.done.set()

    def _draw_group(self, group: list[Member]) -> None:
        rows, start = [], 0
        for m in group:
            rows.append(slice(start, start + len(m.seeds)))
            start += len(m.seeds)
        try:
            conditions = stack_conditions([m.conditions for m in group])
        except ValueError:  # not stackable after all: one call each
            for m in group:
                m.images = draw(m.model, None, None, seeds=m.seeds, callback=m.callback, conditions=m.conditions,
                                **m.kwargs)
            return

        def fan_out(info: dict) -> None:
            for m, r in zip(group, rows):
                if m.error is not None or m.callback is None:
                    continue
                try:
                    m.callback({k: v[r] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == start else v
                                for k, v in info.items()})
                except BaseException as err:  # noqa: BLE001 - this member drops out (cancelled, stopping)
                    m.error = err
            if all(m.error is not None for m in group):
                raise _Dropped()

        seeds = [s for m in group for s in m.seeds]
        generators = [(torch.Generator().manual_seed(m.seeds[0]), len(m.seeds)) for m in group]
        try:
            images = draw(group[0].model, None, None, seeds=seeds, callback=fan_out, conditions=conditions,
                          generators=generators, **group[0].kwargs)
        except _Dropped:
            return
        for m, r in zip(group, rows):
            if m.error is None:
                m.images = images[r]
