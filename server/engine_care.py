"""The live engine as a cache of the database, wired for one server process: the epoch watcher
(``dispatch/engine_watch.py``), the rebuild (``dispatch/rebuild.py``), the repair sweep
(``dispatch/repair_sweep.py``) and the gateway's re-announce (``server/ws/gateway.py``), with their
metrics. docs/architecture.md, "The live engine is a cache", tells the whole story.

Start-up: :meth:`EngineCare.start` makes the watcher's first check before the process serves. The
memory engine is new at every start, so it is rebuilt there (the embedded restart re-arms what was
open); a Redis engine with an epoch is kept, and only its lost deadlines are re-armed, as every start
always did; an empty Redis is rebuilt by whichever process takes the rebuild lock first.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from dispatch.engine_epoch import EngineEpoch, MemoryEngineEpoch, RedisEngineEpoch
from dispatch.engine_watch import EngineWatch, Outcome
from dispatch.rebuild import Rebuild
from dispatch.repair_sweep import RepairSweep
from realtime.keys import Keys
from server.services import Services
from server.ws.gateway import Gateway

log = logging.getLogger("tot.engine")

ENSURE_SWEEP_EVERY_S = 30.0
"""How often each process makes sure the sweep's entry exists (one read): a process of an older
version, which routes no ``repair:`` entries, completes (drops) the one it claims."""


class EngineCare:
    """The watcher, the rebuild and the sweep of one process (see the module docstring)."""

    def __init__(self, services: Services, gateway: Gateway) -> None:
        settings = services.settings
        engine = services.engine
        self.epoch: EngineEpoch = (
            RedisEngineEpoch(engine.redis, Keys(prefix=settings.engine_prefix))
            if engine.redis is not None
            else MemoryEngineEpoch()
        )
        self.rebuild = Rebuild(
            services.sessions,
            engine.states,
            engine.locations,
            [services.dispatch.resume, services.sos.resume],
        )
        self.sweep = RepairSweep(
            services.sessions,
            engine.states,
            engine.deadlines,
            services.dispatch,
            services.sos,
            services.publisher,
            interval_s=settings.repair_interval_s,
            now=services.dispatch.now,
        )
        self.sweep.attach(services.dispatch.worker)
        self.gateway = gateway
        self.watch = EngineWatch(
            self.epoch,
            self.rebuild.run,
            [gateway.engine_changed, self.sweep.ensure_armed],
            interval_s=settings.engine_watch_interval_s,
        )
        services.dispatch.settling = self.watch.settling
        services.dispatch.check_engine = self.watch.check
        services.metrics.registry.register(EngineCareMetrics(self))

    async def start(self) -> None:
        """The first check, before the process serves (never raises: failures are logged, and the
        watcher tries again)."""
        if await self.watch.check() is Outcome.FIRST:
            try:  # a kept engine: re-arm only what a process that died left without an entry
                await self.rebuild.rearm()
            except Exception:  # an unmigrated database: /v1/health says so
                log.exception("could not re-arm deadlines at start-up")

    def loops(self) -> dict[str, Coroutine[Any, Any, None]]:
        """The loops to run as background tasks of their own, by task name, until cancelled: the
        epoch watch and the sweep's entry keeper.

        Why not one task gathering both: ``asyncio.gather`` ends as soon as one child ends cancelled,
        so the app's shutdown saw the task done while the watch was still inside a Redis command;
        the watch then checked again on the closed pool, which opened a connection nobody closed
        (an unclosed transport at interpreter exit). As tasks of the app's own list, each is
        cancelled and waited for before the engine closes (server/app.py ``_stop_tasks``)."""
        return {"engine_watch": self.watch.run(), "repair_sweep_entry": self.keep_sweep_armed()}

    async def keep_sweep_armed(self) -> None:
        """Check the repair sweep's deadline entry every few seconds, until cancelled."""
        while True:
            await asyncio.sleep(ENSURE_SWEEP_EVERY_S)
            try:
                await self.sweep.ensure_armed()
            except Exception:
                log.warning("could not check the repair sweep's entry", exc_info=True)


def _family(
    name: str, documentation: str, label: str | None, counts: Counter[str] | dict[str, int]
) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label] if label else None)
    for key, value in sorted(counts.items()):
        family.add_metric([key] if label else [], value)
    return family


class EngineCareMetrics(Collector):
    """Prometheus counters read from the watcher, rebuild, sweep and gateway when scraped."""

    def __init__(self, care: EngineCare) -> None:
        self.care = care

    def describe(self) -> list[Metric]:
        """Nothing to check at registration (the names are this module's own)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The counters (names end in ``_total`` in the exposition)."""
        care = self.care
        rebuild = care.rebuild.totals
        yield _family(
            "tot_engine_rebuilds",
            "Live engine rebuilds from the database made by this process.",
            None,
            {"": rebuild["rebuilds"]},
        )
        yield _family(
            "tot_engine_rebuild_doctors",
            "Doctor states restored by this process's rebuilds, by status.",
            "status",
            {k.split(":", 1)[1]: v for k, v in rebuild.items() if k.startswith("doctors:")},
        )
        yield _family(
            "tot_engine_rebuild_deadlines",
            "Deadlines re-armed by this process's rebuilds and start-up, by kind (step, offer, sos).",
            "kind",
            {k.split(":", 1)[1]: v for k, v in rebuild.items() if k.startswith("deadlines:")},
        )
        yield _family(
            "tot_engine_epoch_events",
            "What this process's engine watcher saw: first, changed, rebuilt, waiting, failed, unreachable.",
            "outcome",
            care.watch.totals,
        )
        yield _family(
            "tot_ws_reannounce_requests",
            "reannounce frames sent to this process's doctor connections after an engine change.",
            None,
            {"": care.gateway.reannounce_requests},
        )
        sweep = care.sweep.totals
        yield _family("tot_repair_sweeps", "Repair sweeps run by this process.", None, {"": sweep["sweeps"]})
        yield _family(
            "tot_repairs",
            "Repairs made by this process's sweeps, by kind.",
            "kind",
            {k: v for k, v in sweep.items() if k != "sweeps"},
        )
