"""Who am I (any user), and managing users and keys (admins only).

    GET    /api/v1/me                  the caller: name, role, quotas, webhook secret
    GET    /api/v1/users               all users                        (admin)
    POST   /api/v1/users               add a user                       (admin)
    PATCH  /api/v1/users/{name}        change role or quotas            (admin)
    GET    /api/v1/keys                all keys (ids, never the keys)   (admin)
    POST   /api/v1/users/{name}/keys   a new key, shown in this response only (admin)
    DELETE /api/v1/keys/{id}           revoke a key                     (admin)

The CLI does the same on the server's machine: `designerbox users add|list`, `designerbox keys create|revoke|list`.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from designerbox.server.deps import AdminUser, CurrentUser, UsersDep
from designerbox.server.webhooks import user_secret

router = APIRouter(tags=["users and keys"])

Quota = Field(None, ge=0, le=100_000, description="jobs; 0: no limit; null: the server's default")


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    role: Literal["admin", "user"] = "user"
    max_concurrent: int | None = Quota
    jobs_per_minute: int | None = Quota


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["admin", "user"] | None = None
    max_concurrent: int | None = Quota
    jobs_per_minute: int | None = Quota


class UserPublic(BaseModel):
    name: str
    role: str
    max_concurrent: int | None
    jobs_per_minute: int | None


class Me(UserPublic):
    key_id: str | None
    webhook_secret: str   # checks the X-DesignerBox-Signature of this user's callbacks
    keys_required: bool   # False: single-user mode (loopback, no keys yet)


class KeyPublic(BaseModel):
    id: str
    user: str
    created_at: str
    revoked_at: str | None


class KeyCreated(KeyPublic):
    key: str              # shown once: only its hash is kept


@router.get("/me", response_model=Me, summary="The caller: name, role, quotas, webhook secret")
def me(request: Request, user: CurrentUser, users: UsersDep) -> Me:
    state = request.app.state
    return Me(**user.public(), key_id=user.key_id, webhook_secret=user_secret(state.webhook_secret, user.name),
              keys_required=state.settings.require_keys or users.has_keys())


@router.get("/users", response_model=list[UserPublic], summary="All users (admin)")
def list_users(admin: AdminUser, users: UsersDep) -> list[UserPublic]:
    return [UserPublic(**u.public()) for u in users.users()]


@router.post("/users", status_code=201, response_model=UserPublic, summary="Add a user (admin)")
def add_user(body: UserCreate, admin: AdminUser, users: UsersDep) -> UserPublic:
    return UserPublic(**users.add_user(**body.model_dump()).public())


@router.patch("/users/{name}", response_model=UserPublic, summary="Change a user's role or quotas (admin)")
def update_user(name: str, body: UserUpdate, admin: AdminUser, users: UsersDep) -> UserPublic:
    return UserPublic(**users.update_user(name, **body.model_dump(exclude_unset=True)).public())


@router.get("/keys", response_model=list[KeyPublic], summary="All keys: ids and owners, never the keys (admin)")
def list_keys(admin: AdminUser, users: UsersDep, user: str | None = None) -> list[KeyPublic]:
    return [KeyPublic(**k) for k in users.keys(user)]


@router.post("/users/{name}/keys", status_code=201, response_model=KeyCreated,
             summary="A new API key for a user, shown in this response only (admin)")
def create_key(name: str, admin: AdminUser, users: UsersDep) -> KeyCreated:
    key, row = users.create_key(name)
    return KeyCreated(key=key, **row)


@router.delete("/keys/{key_id}", response_model=KeyPublic, summary="Revoke a key (admin)")
def revoke_key(key_id: str, admin: AdminUser, users: UsersDep) -> KeyPublic:
    return KeyPublic(**users.revoke_key(key_id))
