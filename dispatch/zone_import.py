"""Importing service zones from a GeoJSON file into the database (``tot-dispatch zones import``).

The whole import is one transaction: it lands completely or not at all. Zones are upserted by code
(:mod:`geo.zones` says how a feature gets its code and name, and how geometry is repaired): a new code
is created, a known code whose name or area changed is updated in place (its id, and so every call and
doctor limit pointing at it, stays), an identical one is left alone, so importing the same file twice
changes nothing the second time.

``replace=True`` also deletes the zones the file does not contain. Deleting a zone drops the doctor
limits that name it, and a doctor left with no limit serves *every* zone: a silent widening. So a
replacing import that would delete a zone some doctor is limited to is refused as a whole
(:class:`ZoneImportError`); reassign those doctors first (``PUT /v1/doctors/{id}/zones``). Calls that
pointed at a deleted zone keep a null ``zone_id``. A replacing import that yields no zone at all (a
wrong ``--code-property``, say) is refused too rather than emptying the table.

Running servers keep their :class:`dispatch.zones.ZoneIndex` snapshot until they reload it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from geo.zones import ParsedZones, SkippedFeature, parse_zones, read_geojson
from models.db import make_engine, make_sessionmaker
from models.repositories import zones as zone_repo


class ZoneImportError(Exception):
    """The import was refused; nothing was written."""


@dataclass
class ImportReport:
    """What an import did, by zone code. ``repaired`` pairs a code with why its geometry was invalid."""

    features: int = 0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    repaired: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[SkippedFeature] = field(default_factory=list)

    def lines(self) -> list[str]:
        """A human summary: one line of counts, then one line per repaired or skipped feature."""
        out = [
            f"{self.features} features: {len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.removed)} removed, {len(self.skipped)} skipped, "
            f"{len(self.repaired)} repaired"
        ]
        out += [f"  repaired {code}: {reason}" for code, reason in self.repaired]
        for skip in self.skipped:
            who = f"feature #{skip.index}" + (f" ({skip.code})" if skip.code else "")
            out.append(f"  skipped {who}: {skip.reason}")
        out += [f"  removed {code}" for code in self.removed]
        return out


async def import_zones(
    sessions: async_sessionmaker[AsyncSession], parsed: ParsedZones, *, replace: bool = False
) -> ImportReport:
    """Write ``parsed`` zones in one transaction (module docstring for the rules).

    Raises :class:`ZoneImportError` when ``replace`` would delete a zone doctors are limited to, or
    would delete every zone because the file yields none.
    """
    report = ImportReport(
        features=len(parsed.zones) + len(parsed.skipped),
        repaired=[(z.code, z.repaired) for z in parsed.zones if z.repaired],
        skipped=list(parsed.skipped),
    )
    if replace and not parsed.zones:
        raise ZoneImportError("the file yields no zone; --replace would delete every zone (nothing done)")
    async with sessions.begin() as session:
        if replace:
            stale = await zone_repo.zones_except(session, [z.code for z in parsed.zones])
            held = await zone_repo.doctor_counts(session, [z.id for z in stale])
            if held:
                names = ", ".join(f"{z.code} ({held[z.id]} doctors)" for z in stale if z.id in held)
                raise ZoneImportError(
                    f"--replace would delete zones doctors are limited to: {names}; "
                    "change those doctors' zones first (nothing done)"
                )
            await zone_repo.delete_zones(session, [z.id for z in stale])
            report.removed = [z.code for z in stale]
        result = await zone_repo.upsert_zones(
            session, [zone_repo.ZoneData(z.code, z.name, z.area) for z in parsed.zones]
        )
    report.created, report.updated, report.unchanged = result.created, result.updated, result.unchanged
    return report


async def import_geojson_file(
    database_url: str,
    path: str | Path,
    *,
    code_property: str | None = None,
    name_property: str | None = None,
    replace: bool = False,
) -> ImportReport:
    """Read, check and import the GeoJSON file at ``path`` into the database at ``database_url``.

    Raises :class:`geo.zones.GeoJSONError` for an unusable file and :class:`ZoneImportError` for a
    refused import.
    """
    parsed = parse_zones(read_geojson(path), code_property=code_property, name_property=name_property)
    engine = make_engine(database_url)
    try:
        return await import_zones(make_sessionmaker(engine), parsed, replace=replace)
    finally:
        await engine.dispose()
