"""Paging query parameters shared by list endpoints."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from server.schemas import Input

MAX_PAGE = 200


class PageQuery(Input):
    """``limit`` (1-200, default 50) items starting at ``offset``."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=MAX_PAGE, description="items per page (1-200)")
    offset: int = Field(default=0, ge=0, le=1_000_000, description="items to skip")
