"""Who the replay plays: one doctor per vehicle of the traces and a pool of patients, with the emails,
names and licence numbers the replay signs them in with (:mod:`loadtests.replay.runner`) and the demo
makes ahead (:func:`loadtests.replay.demo.seed_demo_accounts`)."""

from __future__ import annotations

from dataclasses import dataclass

from loadtests.replay.inputs import Trace
from loadtests.replay.options import ReplayOptions


@dataclass(frozen=True, slots=True)
class Person:
    """One account of the replay. ``licence`` is set for doctors only."""

    email: str
    password: str
    name: str
    role: str
    licence: str = ""


def _slug(vehicle: str) -> str:
    return vehicle.replace("~", "-x").replace("@", "-").replace(" ", "-").lower()


def doctors(options: ReplayOptions, traces: list[Trace]) -> list[Person]:
    """A doctor per trace, in the traces' order (the replay pairs them by position)."""
    domain, password = options.email_domain, options.password
    return [
        Person(f"cab-{_slug(t.id)}@{domain}", password, f"Dr {t.id}", "doctor", f"RPL-{_slug(t.id)}")
        for t in traces
    ]


def patients(options: ReplayOptions, calls: int) -> list[Person]:
    """The patients who place the ``calls`` calls (``options.patients`` of them, at least one, never
    more than there are calls)."""
    count = max(1, min(options.patients, calls))
    return [
        Person(f"patient-{i}@{options.email_domain}", options.password, f"Patient {i}", "patient")
        for i in range(count)
    ]
