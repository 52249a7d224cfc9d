"""What routes declare: the app's ``Resources`` and the common path parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from workers.manager.models import Id, MemberId
from workers.manager.resources import Resources

__all__ = ["ExecutionIdPath", "JobIdPath", "MemberPath", "Res", "get_resources"]


def get_resources(request: Request) -> Resources:
    """The ``Resources`` of the app serving ``request``."""
    resources: Resources = request.app.state.resources
    return resources


Res = Annotated[Resources, Depends(get_resources)]
MemberPath = Annotated[MemberId, Path(description="A member's UUID.")]
JobIdPath = Annotated[Id, Path(description="A job's id.")]
ExecutionIdPath = Annotated[Id, Path(description="An execution's id.")]
