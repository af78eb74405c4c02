"""Dependencies the routes ask for, as `Annotated` aliases (the objects live on app.state)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from designerbox.server.events import EventLog
from designerbox.server.queue import JobQueue
from designerbox.studio import Studio


def get_queue(request: Request) -> JobQueue:
    return request.app.state.queue


def get_events(request: Request) -> EventLog:
    return request.app.state.events


def get_studio(request: Request) -> Studio:
    return request.app.state.studio


QueueDep = Annotated[JobQueue, Depends(get_queue)]
EventsDep = Annotated[EventLog, Depends(get_events)]
StudioDep = Annotated[Studio, Depends(get_studio)]
