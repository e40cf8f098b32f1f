"""Errors of the dispatch layer: refusals with a code from the shared catalogue (realtime/errors.py),
which the REST layer answers with the code's HTTP status and the socket layer as an error frame."""

from __future__ import annotations

from realtime.errors import ErrorCode, Refusal


class DispatchError(Refusal):
    """A refused dispatch operation: ``DispatchError(ErrorCode.X, message, field=..., **extra)``.

    ``extra`` goes into the error body (e.g. the call's current ``status`` for a 409). Raises
    ``ValueError`` when built with a code the catalogue does not give a REST status.
    """


def not_found(what: str) -> DispatchError:
    """404 ``not_found``: no such ``what`` (a call, an offer, a doctor...)."""
    return DispatchError(ErrorCode.NOT_FOUND, f"no such {what}")


def forbidden(message: str) -> DispatchError:
    """403 ``forbidden``: the actor may not do this."""
    return DispatchError(ErrorCode.FORBIDDEN, message)
