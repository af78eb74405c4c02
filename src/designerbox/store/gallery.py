"""The gallery: every image as a content-addressed PNG plus a row in SQLite (SQLAlchemy 2).

Each row has an owner (the user whose job made it; LOCAL_USER in single-user mode): the server
lists, reads and deletes only the caller's rows unless the caller is an admin (owner=None).
A gallery file from before owners existed gets the column in place, every old row owned by LOCAL_USER.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text, select
from sqlalchemy import delete as sa_delete
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from designerbox.store.png_metadata import write_atomic
from designerbox.store.sqlite import add_missing_columns, create_tables, open_engine

LOCAL_USER = "local"  # the one user of single-user mode (no API keys), and the owner of older rows


class Base(DeclarativeBase):
    pass


class ImageRow(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # first 16 hex of the file's sha256
    sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    path: Mapped[str] = mapped_column(String(512))  # relative to the gallery folder
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)  # seeds reach 2**32: past a PostgreSQL INTEGER
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    record: Mapped[dict] = mapped_column(JSON)
    owner: Mapped[str] = mapped_column(String(64), index=True, default=LOCAL_USER, server_default=LOCAL_USER)

    def summary(self) -> dict:
        return {"id": self.id, "created_at": self.created_at.isoformat(), "model": self.model_id,
                "prompt": self.prompt, "seed": self.seed, "size": f"{self.width}x{self.height}", "path": self.path,
                "owner": self.owner}


class UnknownImageError(KeyError):
    pass


class Gallery:
    """Images under `root/images/ab/<sha256>.png`, records in `root/gallery.sqlite` or, given `database`
    (a SQLAlchemy URL), in that database's "images" table: a cluster's workers and API share both."""

    def __init__(self, root: Path, database: str | None = None):
        self.root = Path(root)
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        self.engine = open_engine(database or self.root / "gallery.sqlite")
        create_tables(Base.metadata, self.engine)  # new files; an older file keeps its table, so:
        add_missing_columns(self.engine, "images", {"owner": f"VARCHAR(64) NOT NULL DEFAULT '{LOCAL_USER}'"},
                            index=True)

    def put_file(self, png: bytes) -> tuple[str, Path]:
        """Write the PNG under its sha256 (atomically; once); returns (sha256, path relative to root).

        A file without a row is invisible to list/get; `add` (idempotent) makes it a gallery image."""
        sha = hashlib.sha256(png).hexdigest()
        rel = Path("images") / sha[:2] / f"{sha}.png"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            write_atomic(path, png)
        return sha, rel

    def add(self, png: bytes, record: dict, owner: str = LOCAL_USER) -> ImageRow:
        """A gallery row for the PNG (idempotent: the same bytes keep their first row and owner; records
        carry their creation time and seconds, so two jobs do not make the same bytes)."""
        sha, rel = self.put_file(png)
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.scalar(select(ImageRow).where(ImageRow.sha256 == sha))
            if row is None:
                w, h = record["output_size"]
                row = ImageRow(id=sha[:16], sha256=sha, path=str(rel), created_at=datetime.now(timezone.utc),
                               model_id=record["model"]["id"], prompt=record["request"]["prompt"],
                               seed=record["seed"], width=w, height=h, record=record, owner=owner)
                s.add(row)
                s.commit()
            return row

    def get(self, image_id: str, owner: str | None = None) -> ImageRow:
        """The image whose id starts with image_id; owner set: only among that owner's images (another
        owner's image is answered exactly as a missing one, so ids do not leak)."""
        q = select(ImageRow).where(ImageRow.id.startswith(image_id, autoescape=True)).limit(2)
        if owner is not None:
            q = q.where(ImageRow.owner == owner)
        with Session(self.engine) as s:
            rows = s.scalars(q).all()
        if len(rows) != 1:
            why = "no image" if not rows else "more than one image"
            raise UnknownImageError(f"{why} with id {image_id!r} in the gallery {self.root}")
        return rows[0]

    def file(self, row: ImageRow) -> Path:
        return self.root / row.path

    def list(self, limit: int = 20, model: str | None = None, search: str | None = None,
             since: datetime | None = None, until: datetime | None = None, offset: int = 0,
             owner: str | None = None) -> list[ImageRow]:
        """Newest first; search matches prompt text (case-insensitive), since/until bound created_at;
        owner: only that owner's images (None: everyone's)."""
        q = select(ImageRow).order_by(ImageRow.created_at.desc(), ImageRow.id).offset(offset).limit(limit)
        if owner is not None:
            q = q.where(ImageRow.owner == owner)
        if model:
            q = q.where(ImageRow.model_id == model)
        if search:
            q = q.where(ImageRow.prompt.icontains(search, autoescape=True))
        if since is not None:
            q = q.where(ImageRow.created_at >= _utc(since))
        if until is not None:
            q = q.where(ImageRow.created_at < _utc(until))
        with Session(self.engine) as s:
            return list(s.scalars(q).all())

    def delete(self, image_id: str, owner: str | None = None) -> ImageRow:
        """Remove an image's row, then its file; returns the removed row."""
        row = self.get(image_id, owner)
        with Session(self.engine) as s:
            s.execute(sa_delete(ImageRow).where(ImageRow.id == row.id))
            s.commit()
        self.file(row).unlink(missing_ok=True)
        return row

    def count(self) -> int:
        with Session(self.engine) as s:
            return len(s.scalars(select(ImageRow.id)).all())


def open_gallery(settings) -> Gallery:
    """The gallery the settings name (DESIGNERBOX_IMAGES / DESIGNERBOX_DATABASE, else home/gallery): the one
    every front door (CLI, Python API, server, workers) opens, so they all see the same images."""
    return Gallery(settings.gallery_root, settings.database)


def _utc(t: datetime) -> datetime:
    """SQLite keeps datetimes as naive text: compare in UTC, without the offset."""
    return (t.astimezone(timezone.utc) if t.tzinfo else t).replace(tzinfo=None)


def dumps(row: ImageRow) -> str:
    return json.dumps(dict(row.summary(), record=row.record), indent=2)
