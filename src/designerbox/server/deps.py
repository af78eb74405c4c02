"""Dependencies the routes ask for, as `Annotated` aliases (the objects live on app.state).

Authentication: every API route depends on `authenticate` (set app-wide in app.py; the web page's
files and /docs do not). While no API key is live and the server may run without them (loopback),
every request acts as LOCAL_USER, an admin: single-user mode. Once a key exists (or the server
listens beyond loopback), every request needs `Authorization: Bearer <key>`: the header the OpenAI
client sends with its api_key, and the one A1111 clients can send (webuiapi: set
`api.session.headers["Authorization"]`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from designerbox.server.events import EventLog
from designerbox.server.queue import JobQueue, JobRow, UnknownJobError
from designerbox.store.gallery import LOCAL_USER
from designerbox.store.users import User, UserStore
from designerbox.studio import Studio

LOCAL = User(LOCAL_USER, "admin")
bearer = HTTPBearer(auto_error=False, description="an API key: `designerbox keys create USER` prints one")


class AuthError(Exception):
    """401: no key, or not a live one."""


class Forbidden(Exception):
    """403: a user's key on an admin route (admin routes are public knowledge; job and image ids are not)."""


def get_queue(request: Request) -> JobQueue:
    return request.app.state.queue


def get_events(request: Request) -> EventLog:
    return request.app.state.events


def get_studio(request: Request) -> Studio:
    return request.app.state.studio


def get_users(request: Request) -> UserStore:
    return request.app.state.users


def authenticate(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None,
                                                          Depends(bearer)]) -> User:
    users: UserStore = request.app.state.users
    if not request.app.state.settings.require_keys and not users.has_keys():
        return LOCAL  # single-user mode: on loopback, before any key exists; any header is ignored
    if credentials is None:
        raise AuthError("this server needs an API key: send 'Authorization: Bearer <key>' "
                        "(an admin creates one with `designerbox keys create USER`)")
    user = users.authenticate(credentials.credentials)
    if user is None:
        raise AuthError("the API key is not valid (unknown, revoked or mistyped)")
    return user


def require_admin(user: Annotated[User, Depends(authenticate)]) -> User:
    if not user.is_admin:
        raise Forbidden(f"user {user.name!r} is not an admin; this needs the admin role")
    return user


def owner_filter(user: User) -> str | None:
    """The owner to filter rows by: the user's own name, or None (everyone's) for an admin."""
    return None if user.is_admin else user.name


def owned_job(queue: JobQueue, job_id: str, user: User) -> JobRow:
    """The job, if the user may see it; another user's job is answered exactly as a missing one (404)."""
    row = queue.get(job_id)
    if not user.is_admin and row.user != user.name:
        raise UnknownJobError(f"no job with id {job_id!r}")
    return row


QueueDep = Annotated[JobQueue, Depends(get_queue)]
EventsDep = Annotated[EventLog, Depends(get_events)]
StudioDep = Annotated[Studio, Depends(get_studio)]
UsersDep = Annotated[UserStore, Depends(get_users)]
CurrentUser = Annotated[User, Depends(authenticate)]
AdminUser = Annotated[User, Depends(require_admin)]
