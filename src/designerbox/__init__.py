"""DesignerBox: a self-hosted AI image studio.

    import designerbox
    images = designerbox.generate("a red apple", style="3d", seed=1)
    images[0].image.save("apple.png")
"""

__version__ = "0.1.0"


def generate(prompt: str, **options):
    """See designerbox.api.generate (imported on first call: importing designerbox stays cheap)."""
    from designerbox.api import generate as _generate

    return _generate(prompt, **options)


def verify(path, studio=None) -> dict:
    """Draw the image at `path` again from its PNG record and compare: see designerbox.jobs.verify."""
    from designerbox.jobs.verify import verify as _verify
    from designerbox.studio import Studio

    return _verify(studio or Studio(), path)


def originality(images, against, top: int = 3, studio=None) -> dict:
    """Is each image new, or a copy of an image in `against` (a dataset folder or a folder of images)?
    Its nearest reference images and a verdict: see designerbox.training.originality."""
    import os

    from designerbox.studio import Studio
    from designerbox.training.originality import check

    images = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    return check(studio or Studio(), images, against, top=top)


def __getattr__(name):
    if name in ("Studio", "GenerationRequest"):
        from designerbox import api

        return getattr(api, name)
    raise AttributeError(f"module 'designerbox' has no attribute {name!r}")
