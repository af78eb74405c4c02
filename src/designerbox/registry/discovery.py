"""Find installed models: the package's built-in ones and the user's models folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from designerbox.registry.manifest import ModelManifest

DEFAULT_MODEL = "dbx-base-v2"


class UnknownModelError(ValueError):
    pass


class ManifestError(ValueError):
    pass


def builtin_models_dir() -> Path:
    return Path(str(resources.files("designerbox").joinpath("weights")))


class Registry:
    """Every model manifest found under the built-in folder and `home/models`, by id.

    A user model with the id of a built-in one is an error (ids address one model).
    """

    def __init__(self, home: Path | None = None, builtin_dir: Path | None = None):
        self.home = home
        self.builtin_dir = builtin_dir or builtin_models_dir()
        self.models: dict[str, ModelManifest] = {}
        self.problems: list[str] = []  # manifests that could not be read, shown by `models list`
        self._scan(self.builtin_dir, builtin=True)
        if home is not None:
            self._scan(home / "models", builtin=False)

    def _scan(self, root: Path, builtin: bool) -> None:
        if not root.is_dir():
            return
        for manifest in sorted(root.glob("*/manifest.json")):
            try:
                m = ModelManifest.read(manifest.parent, builtin=builtin)
            except (ValidationError, ValueError, OSError) as err:
                self.problems.append(f"{manifest}: {err}")
                continue
            if m.id in self.models:
                self.problems.append(f"{manifest}: id {m.id!r} is already used by {self.models[m.id].folder}")
                continue
            self.models[m.id] = m

    def list(self, kind: str | None = None) -> list[ModelManifest]:
        return [m for m in self.models.values() if kind is None or m.kind == kind]

    def get(self, model_id: str | None) -> ModelManifest:
        model_id = model_id or DEFAULT_MODEL
        if model_id not in self.models:
            raise UnknownModelError(f"unknown model {model_id!r}; installed models: {', '.join(self.models) or 'none'}")
        return self.models[model_id]
