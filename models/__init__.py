"""SQLAlchemy models (the database of record) and the repositories that read and write them.

Importing this package registers every table on :data:`models.base.Base.metadata` (Alembic reads it).
"""

from models.base import Base
from models.calendar_feeds import CalendarFeed
from models.calls import Call, CallEvent
from models.chat import ChatMessage
from models.clinic_catalogue import ClinicAdmin, ClinicService
from models.clinics import Clinic
from models.doctor_zones import DoctorZone
from models.doctors import DoctorProfile
from models.notifications import (
    Notification,
    NotifyPreference,
    NotifyThrottle,
    TelegramLink,
    TelegramLinkToken,
    TelegramUpdate,
)
from models.offers import Offer
from models.outbox import OutboxEvent, OutboxRelayLease
from models.phone_codes import PhoneCode
from models.push import OfferSeen, PushSubscription
from models.ratings import Rating
from models.schedules import DoctorSchedule, DoctorService
from models.share_links import ShareLink
from models.sos import SosAlert, SosEvent
from models.track import TrackPoint
from models.users import User
from models.visit_bookings import VisitBooking
from models.zones import Zone

__all__ = [
    "Base",
    "CalendarFeed",
    "Call",
    "CallEvent",
    "ChatMessage",
    "Clinic",
    "ClinicAdmin",
    "ClinicService",
    "DoctorProfile",
    "DoctorSchedule",
    "DoctorService",
    "DoctorZone",
    "Notification",
    "NotifyPreference",
    "NotifyThrottle",
    "Offer",
    "OfferSeen",
    "OutboxEvent",
    "OutboxRelayLease",
    "PhoneCode",
    "PushSubscription",
    "Rating",
    "ShareLink",
    "SosAlert",
    "SosEvent",
    "TelegramLink",
    "TelegramLinkToken",
    "TelegramUpdate",
    "TrackPoint",
    "User",
    "VisitBooking",
    "Zone",
]
