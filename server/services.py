"""What request handlers share: settings, the database, the live engine, tokens and metrics."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from dispatch.agenda import AgendaService
from dispatch.booking import BookingService
from dispatch.calendar_feed import CalendarFeeds
from dispatch.calls import CallService
from dispatch.catalogue import Catalogue
from dispatch.chat import ChatService
from dispatch.doctor_schedules import DoctorSchedules
from dispatch.offer_loop import OfferLoop
from dispatch.publisher import EventPublisher
from dispatch.ratings import RatingService
from dispatch.sos import SosService
from dispatch.zones import ZoneIndex
from server.abuse import AuthLimits, HashGate
from server.auth.access import AccessCheck
from server.auth.principal import Principal, authenticate
from server.auth.tokens import TokenService
from server.engine import LiveEngine
from server.metrics import Metrics
from server.notify.service import Notify
from server.settings import Settings


@dataclass
class PlannedVisits:
    """Planned visits (docs/planned-visits.md): clinic catalogues, doctors' schedules, bookings."""

    catalogue: Catalogue
    schedules: DoctorSchedules
    bookings: BookingService
    agenda: AgendaService
    """Doctors' agendas and patients' visits (reads)."""
    feeds: CalendarFeeds
    """Doctors' secret ICS feeds."""


@dataclass
class Services:
    """Everything an application instance holds open; built by the app's lifespan."""

    settings: Settings
    db: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    engine: LiveEngine
    publisher: EventPublisher
    """The one door for domain events (``dispatch/publisher.py``): publish through it, never through
    ``engine.broker``."""
    tokens: TokenService
    metrics: Metrics
    zones: ZoneIndex
    calls: CallService
    dispatch: OfferLoop
    chat: ChatService
    ratings: RatingService
    sos: SosService
    auth_limits: AuthLimits
    """Login and registration tries per client address and per account (``server/abuse.py``)."""
    hash_gate: HashGate
    """The bounded queue of password hashes (``server/abuse.py``)."""
    access: AccessCheck
    """Whether a verified token is still honoured (revocation, ``server/auth/access.py``)."""
    notify: Notify | None = None
    """The notification pipeline (``server/notify/``): channels, Telegram's bot and links."""
    planned: PlannedVisits | None = None
    """Planned visits' services (docs/planned-visits.md); read with :meth:`planned_visits`."""

    def planned_visits(self) -> PlannedVisits:
        """The planned visits' services. Raises ``RuntimeError`` when the app was built without them."""
        if self.planned is None:
            raise RuntimeError("planned visits are not wired into this application")
        return self.planned

    async def authorize(self, conn: HTTPConnection) -> Principal:
        """The principal of ``conn``'s bearer token, once the token is verified and not revoked; kept on
        the connection for :meth:`principal`. Raises ``ApiError`` 401 (``auth_required``,
        ``token_invalid``, ``token_expired``, ``token_revoked``)."""
        principal = await self.access.check(authenticate(conn, self.tokens))
        conn.state.principal = principal
        return principal

    def principal(self, conn: HTTPConnection) -> Principal:
        """The principal :meth:`authorize` found for ``conn`` (the route guard of ``server/api.py`` runs
        it for every signed-in route). Raises ``RuntimeError`` when it did not run: a route that reads
        a principal must be declared with roles (``()`` for any signed-in user), never public."""
        principal: Principal | None = getattr(conn.state, "principal", None)
        if principal is None:
            raise RuntimeError("no authorized principal: the route is public or its guard did not run")
        return principal


def services(conn: HTTPConnection) -> Services:
    """The services of the application serving ``conn``."""
    svc: Services = conn.app.state.services
    return svc
