"""Brand kits per user, in `home/brands.sqlite` (or the cluster's database; SQLAlchemy 2).

A row is (owner, name) -> the kit as JSON (colours, fonts: what tools/marketing.py's BrandKit holds,
validated by the caller) and the logo as PNG bytes. The marketing tool reads a logo from a file, so
`get` writes the logo once to `logo_dir/<sha256>.png` (content-addressed, written atomically) and
returns the kit with that path in "logo".
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import JSON, DateTime, LargeBinary, String, select
from sqlalchemy import delete as sa_delete
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from designerbox.store.png_metadata import write_atomic
from designerbox.store.sqlite import open_engine

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
MAX_LOGO_BYTES = 4 << 20


class Base(DeclarativeBase):
    pass


class BrandRow(Base):
    __tablename__ = "brand_kits"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kit: Mapped[dict] = mapped_column(JSON)
    logo_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    logo_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BrandError(ValueError):
    """A bad brand-kit operation (bad or duplicate name, logo too large)."""


class UnknownBrandError(BrandError):
    pass


class BrandStore:
    def __init__(self, database: Path | str, logo_dir: Path):
        """database: a SQLite file or a SQLAlchemy URL; logo_dir: where logos are written for the tools."""
        self.engine = open_engine(database)
        self.logo_dir = Path(logo_dir)
        Base.metadata.create_all(self.engine)

    def put(self, owner: str, name: str, kit: dict, logo_png: bytes | None = None, replace: bool = False) -> dict:
        """Save a kit (a validated BrandKit as a dict; its "logo" path is ignored: the bytes are kept)."""
        if not NAME_PATTERN.match(name or ""):
            raise BrandError(f"brand name {name!r} is not valid: 1-64 letters, digits, spaces, '_', '.', '-', "
                             "starting with a letter or digit")
        if logo_png is not None and len(logo_png) > MAX_LOGO_BYTES:
            raise BrandError(f"the logo is {len(logo_png)} bytes; at most {MAX_LOGO_BYTES} as PNG")
        kit = {k: v for k, v in kit.items() if k != "logo"} | {"name": name}
        sha = hashlib.sha256(logo_png).hexdigest() if logo_png is not None else None
        with Session(self.engine) as s:
            row = s.get(BrandRow, (owner, name))
            if row is not None and not replace:
                raise BrandError(f"brand {name!r} already exists for {owner!r} (replace it with --replace)")
            if row is None:
                row = BrandRow(owner=owner, name=name)
                s.add(row)
            row.kit, row.logo_png, row.logo_sha256 = kit, logo_png, sha
            row.updated_at = datetime.now(timezone.utc).replace(tzinfo=None)
            s.commit()
        return self.get(owner, name)

    def get(self, owner: str, name: str) -> dict:
        """The kit with "logo": a file path (or None)."""
        with Session(self.engine) as s:
            row = s.get(BrandRow, (owner, name))
            if row is None:
                names = [r.name for r in self._rows(s, owner)]
                raise UnknownBrandError(f"no brand kit named {name!r} for {owner!r}; brand kits: "
                                        f"{', '.join(names) or 'none (designerbox brand add NAME ...)'}")
            kit, png, sha = dict(row.kit), row.logo_png, row.logo_sha256
        kit["logo"] = str(self._logo_file(png, sha)) if png is not None else None
        return kit

    def list(self, owner: str) -> list[dict]:
        with Session(self.engine) as s:
            return [dict(r.kit, name=r.name, logo_sha256=r.logo_sha256,
                         updated_at=r.updated_at.replace(tzinfo=timezone.utc).isoformat()) for r in self._rows(s, owner)]

    def delete(self, owner: str, name: str) -> None:
        self.get(owner, name)
        with Session(self.engine) as s:
            s.execute(sa_delete(BrandRow).where(BrandRow.owner == owner, BrandRow.name == name))
            s.commit()

    @staticmethod
    def _rows(s: Session, owner: str):
        return s.scalars(select(BrandRow).where(BrandRow.owner == owner).order_by(BrandRow.name)).all()

    def _logo_file(self, png: bytes, sha: str) -> Path:
        path = self.logo_dir / f"{sha}.png"
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != sha:
            self.logo_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(path, png)
        return path
