"""Model licences and commercial use: the table in presets/licences.json, looked up by id or alias.

Every manifest has a `licence` (free text: built-in models say "MIT"); `flag(text)` says what the
table knows about it: its id, name, commercial use ("yes", "conditions", "no" or "unknown") and the
condition in one line. Text the table does not know is commercial use "unknown".

`models add` records a licence (registry/user_checkpoints.py): `--licence ID` (checked here with
`get`), else what the files state (`stated_licence`: a single file's safetensors metadata
"modelspec.license" or "license", a diffusers folder's README.md front matter `license:` /
`license_name:` as Hugging Face writes it), else "unknown". The family is never used to guess: a
fine-tune may add terms to its base model's licence, and the architecture does not tell which base
it came from (Flex.1 is a guidance-embedded FLUX like FLUX.1 dev, but Apache-2.0); `base_licences`
only gives a hint for the user to confirm with --licence.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

COMMERCIAL = ("yes", "conditions", "no", "unknown")
UNKNOWN = "unknown"
METADATA_KEYS = ("modelspec.license", "license", "licence")  # ModelSpec (Stability's), then plain keys


class UnknownLicenceError(ValueError):
    pass


class Licence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str                          # the licence document's title
    commercial: Literal[COMMERCIAL]
    summary: str = ""                  # the condition, in one line (required unless commercial is "yes")
    used_by: str = ""                  # well-known models under it
    base_of: list[str] = []            # families whose base model is published under it (a hint only)
    aliases: list[str] = []


def _key(text: str) -> str:
    """Case, spaces and underscores do not matter: "CreativeML Open RAIL-M" ~ "creativeml-open-rail-m"."""
    return re.sub(r"[\s_]+", "-", text.strip().lower())


@lru_cache(maxsize=1)
def table() -> dict[str, Licence]:
    data = json.loads(resources.files("designerbox.presets").joinpath("licences.json").read_text())
    out = {}
    for entry in data["licences"]:
        lic = Licence(**entry)
        if lic.commercial != "yes" and not lic.summary:
            raise ValueError(f"licences.json: {lic.id} (commercial use {lic.commercial}) needs a summary")
        out[lic.id] = lic
    return out


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    return {_key(name): lic.id for lic in table().values() for name in (lic.id, *lic.aliases)}


def find(text: str | None) -> Licence | None:
    """The table's entry for a licence id or alias (any case), or None."""
    licence_id = _index().get(_key(text or UNKNOWN))
    return table()[licence_id] if licence_id else None


def get(text: str) -> Licence:
    """The entry for an id or alias, else an error that lists the valid ids (for --licence)."""
    lic = find(text)
    if lic is None:
        raise UnknownLicenceError(f"unknown licence {text!r}; valid licence ids: {', '.join(table())}")
    return lic


def flag(text: str | None) -> dict:
    """What a manifest's licence text means for commercial use:
    {"licence", "licence_name", "commercial_use", "condition"}."""
    lic = find(text)
    if lic is None:
        return {"licence": text or UNKNOWN, "licence_name": text or UNKNOWN, "commercial_use": UNKNOWN,
                "condition": "a licence the table does not know: read it before commercial use"}
    return {"licence": lic.id, "licence_name": lic.name, "commercial_use": lic.commercial, "condition": lic.summary}


def notice(model_id: str, text: str | None) -> str | None:
    """A one-line notice when commercial use is "no" or "unknown", else None."""
    f = flag(text)
    if f["commercial_use"] == "no":
        return f"notice: model {model_id} is under the {f['licence_name']} ({f['licence']}): {f['condition']}"
    if f["commercial_use"] == UNKNOWN:
        what = "has no recorded licence" if f["licence"] == UNKNOWN else f"is under {f['licence']!r}, a licence " \
            "DesignerBox does not know"
        return (f"notice: model {model_id} {what}: check it before commercial use (a user model records it with "
                "`designerbox models add PATH --licence ID --force`)")
    return None


def base_licences(family: str) -> list[Licence]:
    """The licences the family's base models are published under: a hint, never a guess."""
    return [lic for lic in table().values() if family in lic.base_of]


def _front_matter_licence(readme: Path) -> str | None:
    """A Hugging Face model card's `license:` (or `license_name:` when it says "other")."""
    m = re.match(r"---\s*\n(.*?)\n---", readme.read_text(errors="replace"), re.DOTALL)
    if not m:
        return None
    fields = dict(re.findall(r"^(license|license_name):\s*[\"']?([^\"'\n]+?)[\"']?\s*$", m.group(1), re.MULTILINE))
    if fields.get("license", "").lower() == "other":
        return fields.get("license_name") or "other"
    return fields.get("license") or fields.get("license_name")


def stated_licence(path: Path) -> tuple[str, str] | None:
    """(licence text, where it was found) from the files themselves, or None: a single file's safetensors
    metadata, a diffusers folder's README.md front matter or its denoiser's safetensors metadata."""
    from designerbox.registry.files import read_safetensors_header

    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("transformer/*.safetensors")) + sorted(
        path.glob("unet/*.safetensors"))
    if path.is_dir() and (path / "README.md").is_file():
        text = _front_matter_licence(path / "README.md")
        if text:
            return text.strip(), "README.md front matter"
    for f in files[:1]:
        meta = read_safetensors_header(f).get("__metadata__") or {}
        for key in METADATA_KEYS:
            if str(meta.get(key, "")).strip():
                return str(meta[key]).strip()[:100], f"safetensors metadata {key!r} of {f.name}"
    return None
