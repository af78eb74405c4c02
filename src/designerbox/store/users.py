"""Users and API keys, in `home/users.sqlite` (SQLAlchemy 2).

A key is `dbx_<id>_<secret>`: <id> (12 hex) names the row, <secret> is 32 random bytes (urlsafe
base64). Only sha256(key) is stored, and it is compared with `hmac.compare_digest`. A fast hash is
enough here: a slow one (bcrypt, scrypt) protects low-entropy passwords from guessing after a
database leak, but a 256-bit random secret cannot be guessed at any hashing speed, and every request
checks a key, so the check should cost microseconds, not 100 ms.

Roles: "admin" sees and manages everyone's jobs, images, users and keys and has no quotas; "user"
sees only their own work, within their quotas (None: the server's defaults).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import DateTime, ForeignKey, Integer, String, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from designerbox.store.sqlite import create_tables, open_engine

ROLES = ("admin", "user")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
KEY_PATTERN = re.compile(r"^dbx_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    max_concurrent: Mapped[int | None] = mapped_column(Integer, nullable=True)    # queued + running jobs
    jobs_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)


class KeyRow(Base):
    __tablename__ = "keys"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    user: Mapped[str] = mapped_column(String(64), ForeignKey("users.name"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)


@dataclass(frozen=True)
class User:
    """Who a request acts for."""

    name: str
    role: str
    max_concurrent: int | None = None
    jobs_per_minute: int | None = None
    key_id: str | None = None  # the key used; None in single-user mode

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def public(self) -> dict:
        return {"name": self.name, "role": self.role, "max_concurrent": self.max_concurrent,
                "jobs_per_minute": self.jobs_per_minute}


class UserError(ValueError):
    """A bad user or key operation (unknown or duplicate name, bad role): the message names the choices."""


class UnknownUserError(UserError):
    """No such user or key (a 404 in the API)."""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # SQLite keeps naive text; always UTC here


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _user(row: UserRow, key_id: str | None = None) -> User:
    return User(row.name, row.role, row.max_concurrent, row.jobs_per_minute, key_id)


def _key_public(row: KeyRow) -> dict:
    return {"id": row.id, "user": row.user, "created_at": _iso(row.created_at), "revoked_at": _iso(row.revoked_at)}


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.replace(tzinfo=timezone.utc).isoformat()


class UserStore:
    def __init__(self, path: Path | str):
        """path: a SQLite file, or a SQLAlchemy URL (the cluster's shared database)."""
        self.path = path
        self.engine = open_engine(path)
        create_tables(Base.metadata, self.engine)

    # -- users ------------------------------------------------------------------------------------
    def add_user(self, name: str, role: str = "user", max_concurrent: int | None = None,
                 jobs_per_minute: int | None = None) -> User:
        if not NAME_PATTERN.match(name or ""):
            raise UserError(f"user name {name!r} is not valid: 1-64 characters, lower-case letters, digits, "
                            "'_', '.', '-', starting with a letter or digit")
        _check_role(role)
        _check_limits(max_concurrent, jobs_per_minute)
        with Session(self.engine) as s:
            if s.get(UserRow, name) is not None:
                raise UserError(f"user {name!r} already exists")
            row = UserRow(name=name, role=role, created_at=_now(), max_concurrent=max_concurrent,
                          jobs_per_minute=jobs_per_minute)
            s.add(row)
            s.commit()
            return _user(row)

    def get_user(self, name: str) -> User:
        with Session(self.engine) as s:
            row = s.get(UserRow, name)
        if row is None:
            raise UnknownUserError(f"no user named {name!r}; users: {', '.join(u.name for u in self.users()) or 'none'}")
        return _user(row)

    def users(self) -> list[User]:
        with Session(self.engine) as s:
            return [_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.name)).all()]

    def update_user(self, name: str, **values) -> User:
        """Change role, max_concurrent or jobs_per_minute (None for a quota: the server's default)."""
        self.get_user(name)
        unknown = set(values) - {"role", "max_concurrent", "jobs_per_minute"}
        if unknown:
            raise UserError(f"cannot change {sorted(unknown)}; only role, max_concurrent, jobs_per_minute")
        if "role" in values:
            _check_role(values["role"])
        _check_limits(values.get("max_concurrent"), values.get("jobs_per_minute"))
        if not values:
            return self.get_user(name)
        with Session(self.engine) as s:
            s.execute(update(UserRow).where(UserRow.name == name).values(**values))
            s.commit()
        return self.get_user(name)

    # -- keys -------------------------------------------------------------------------------------
    def create_key(self, user: str) -> tuple[str, dict]:
        """A new key for the user: (the key, shown this once; its public row)."""
        self.get_user(user)
        key_id = secrets.token_hex(6)
        key = f"dbx_{key_id}_{secrets.token_urlsafe(32)}"
        row = KeyRow(id=key_id, user=user, sha256=_hash(key), created_at=_now(), revoked_at=None)
        with Session(self.engine, expire_on_commit=False) as s:
            s.add(row)
            s.commit()
        return key, _key_public(row)

    def revoke_key(self, key_id: str) -> dict:
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.get(KeyRow, key_id)
            if row is None:
                raise UnknownUserError(f"no key with id {key_id!r}")
            if row.revoked_at is None:
                row.revoked_at = _now()
                s.commit()
            return _key_public(row)

    def keys(self, user: str | None = None) -> list[dict]:
        q = select(KeyRow).order_by(KeyRow.created_at)
        if user is not None:
            q = q.where(KeyRow.user == user)
        with Session(self.engine) as s:
            return [_key_public(r) for r in s.scalars(q).all()]

    def has_keys(self) -> bool:
        """Whether any key is live: then every request must carry one."""
        with Session(self.engine) as s:
            return s.scalar(select(KeyRow.id).where(KeyRow.revoked_at.is_(None)).limit(1)) is not None

    def authenticate(self, key: str) -> User | None:
        """The user a live key belongs to, or None (malformed, unknown, revoked or wrong key)."""
        m = KEY_PATTERN.match(key or "")
        if m is None:
            return None
        with Session(self.engine) as s:
            row = s.get(KeyRow, m.group(1))
            user = s.get(UserRow, row.user) if row is not None else None
        if row is None:
            hmac.compare_digest(_hash(key), "0" * 64)  # same work either way
            return None
        if not hmac.compare_digest(_hash(key), row.sha256) or row.revoked_at is not None or user is None:
            return None
        return _user(user, key_id=row.id)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")


def _check_limits(*limits: int | None) -> None:
    for v in limits:
        if v is not None and v < 0:
            raise UserError(f"a quota is a number of jobs, 0 or more (0: unlimited), not {v}")
