"""A clinic's catalogue over REST: its admins (appointed by admins) and its services (managed by an admin
or the clinic's own admins, listed for everyone signed in). Rules: ``dispatch/catalogue.py``."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from dispatch.calls import Who
from dispatch.catalogue import NewService
from models.clinic_catalogue import ClinicService
from models.enums import Role
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_body
from server.routes import api
from server.schemas import SPECIALTY_PATTERN, Input
from server.services import services

MANAGERS = (Role.ADMIN, Role.CLINIC_ADMIN)
CURRENCY_PATTERN = r"^[A-Z]{3}$"


class ServiceIn(Input):
    """A new service: minutes for the duration (5-720) and buffers (0-240); ``price`` (two decimals)
    in ``currency``, an ISO 4217 code."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    specialty: str = Field(pattern=SPECIALTY_PATTERN)
    duration_min: int = Field(ge=5, le=720)
    price: Decimal = Field(ge=0, max_digits=10, decimal_places=2)
    currency: str = Field(default="RUB", pattern=CURRENCY_PATTERN)
    buffer_before_min: int = Field(default=0, ge=0, le=240)
    buffer_after_min: int = Field(default=0, ge=0, le=240)


class ServicePatch(Input):
    """Whether the service is offered (booked visits keep it either way)."""

    model_config = ConfigDict(extra="forbid")

    active: bool


class ServiceOut(BaseModel):
    """A clinic's service; ``price`` a decimal string in ``currency``."""

    id: uuid.UUID
    clinic_id: uuid.UUID
    name: str
    specialty: str
    duration_min: int
    price: str
    currency: str
    buffer_before_min: int
    buffer_after_min: int
    active: bool


class ServiceList(BaseModel):
    """A clinic's services by name."""

    items: list[ServiceOut]


class ClinicAdminOut(BaseModel):
    """A clinic admin account and the clinic it manages."""

    user_id: uuid.UUID
    clinic_id: uuid.UUID


def service_json(service: ClinicService) -> dict[str, Any]:
    """``ServiceOut`` as JSON-ready data."""
    return {
        "id": str(service.id),
        "clinic_id": str(service.clinic_id),
        "name": service.name,
        "specialty": service.specialty,
        "duration_min": service.duration_min,
        "price": str(service.price),
        "currency": service.currency,
        "buffer_before_min": service.buffer_before_min,
        "buffer_after_min": service.buffer_after_min,
        "active": service.active,
    }


def path_id(request: Request, name: str) -> uuid.UUID:
    """The path parameter ``name`` as a UUID. Raises ``ApiError`` 422 naming it."""
    try:
        return uuid.UUID(request.path_params[name])
    except ValueError:
        raise ApiError(ErrorCode.INVALID_INPUT, f"{name}: not a UUID", field=name) from None


def who_of(request: Request) -> Who:
    """The signed-in user as the dispatch layer's :class:`Who`."""
    principal = services(request).principal(request)
    return Who(principal.user_id, principal.role)


@api.route(
    "PUT",
    "/v1/clinics/{clinic_id}/admins/{user_id}",
    summary="Make a clinic_admin account a clinic's admin",
    tag="clinics",
    response=ClinicAdminOut,
    roles=(Role.ADMIN,),
)
async def set_clinic_admin(request: Request) -> Response:
    """Admins only. A ``clinic_admin`` account manages one clinic (its services, its doctors'
    schedules and zones); this replaces any clinic it had. 422 naming ``user_id`` for an account that
    is not a ``clinic_admin``."""
    clinic_id, user_id = path_id(request, "clinic_id"), path_id(request, "user_id")
    await services(request).planned_visits().catalogue.set_clinic_admin(who_of(request), clinic_id, user_id)
    return json_response({"user_id": str(user_id), "clinic_id": str(clinic_id)})


@api.route(
    "POST",
    "/v1/clinics/{clinic_id}/services",
    summary="Add a service to a clinic's catalogue",
    tag="clinics",
    body=ServiceIn,
    response=ServiceOut,
    status=201,
    roles=MANAGERS,
    errors=(409,),
)
async def create_service(request: Request) -> Response:
    """An admin, or the clinic's own admin (403 for another clinic's). A name is unique within the
    clinic (409 ``service_exists``)."""
    clinic_id = path_id(request, "clinic_id")
    body = await parse_body(request, ServiceIn)
    service = (
        await services(request)
        .planned_visits()
        .catalogue.create_service(who_of(request), clinic_id, NewService(**body.model_dump()))
    )
    return json_response(service_json(service), status_code=201)


@api.route(
    "GET",
    "/v1/clinics/{clinic_id}/services",
    summary="A clinic's services",
    tag="clinics",
    response=ServiceList,
)
async def list_services(request: Request) -> Response:
    """Everyone signed in: what the clinic sells, by name (inactive ones too, marked)."""
    clinic_id = path_id(request, "clinic_id")
    found = await services(request).planned_visits().catalogue.list_services(clinic_id)
    return json_response({"items": [service_json(s) for s in found]})


@api.route(
    "PATCH",
    "/v1/services/{service_id}",
    summary="Offer a service, or no longer",
    tag="clinics",
    body=ServicePatch,
    response=ServiceOut,
    roles=MANAGERS,
)
async def patch_service(request: Request) -> Response:
    """An admin or the clinic's own admin. An inactive service has no slots and takes no bookings."""
    service_id = path_id(request, "service_id")
    body = await parse_body(request, ServicePatch)
    service = (
        await services(request)
        .planned_visits()
        .catalogue.set_active(who_of(request), service_id, body.active)
    )
    return json_response(service_json(service))
