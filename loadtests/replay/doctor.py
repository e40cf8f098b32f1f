"""The doctor app: one cab of the trace file, as a doctor on a real WebSocket.

Behaviour model (times: replay time unless marked wall):

- **Shift.** The doctor comes online at its cab's first fix of the slice and follows the trace: each
  real fix is sent as a ``location`` frame when its time comes on the compressed clock (with the wall
  time as ``ts``: the server only takes fixes within minutes of its own clock). Between fixes, at least
  every ``wall_keepalive_s``, it sends its position interpolated along the trace, so a slow replay
  does not look like a silent phone. A gap of more than ``replay_offline_gap_min`` in the trace (the
  cab was switched off) takes the doctor ``offline`` until the next fix.
- **Availability.** ``available`` while the real cab was free (``occupied=0``), ``paused`` while it
  had a fare; a trace without the column is free throughout.
- **Offers.** On ``offer.created`` the doctor waits ``wall_accept_delay_s`` (wall) and accepts with
  probability ``accept_share``; otherwise it declines (``decline_share`` of the rest) or lets the offer
  expire.
- **Visit.** After an accept it subscribes to ``call:<id>``, reports ``en_route``, drives to the patient
  along the straight line at ``drive_kmh`` (the drive lasts ``distance x road_factor / speed``) with a
  position every ``replay_drive_fix_s`` (at most 5 a wall second), reports ``arrived`` and
  ``in_progress``, stays ``replay_visit_min``, reports ``completed``, then rejoins its trace where the
  real cab is by then (a jump: the real cab never made this trip). It answers the patient's first chat
  line once. A ``call.cancelled`` or ``call.unassigned`` ends the visit at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

from geo.distance import haversine_m
from loadtests.replay.accounts import Account
from loadtests.replay.api import ApiError
from loadtests.replay.context import Context, make_client, subscribe, track_offsets
from loadtests.replay.inputs import Fix, Trace
from loadtests.replay.recorder import now_ms
from realtime.client import ClientError, ConnectionLost, Event

WALL_MIN_FIX_GAP_S = 0.2
"""Fewest wall seconds between two fixes while driving (the server allows 10 location frames a second)."""
ACCURACY_M = 10.0
"""Accuracy sent with every fix, metres."""
REPORT_ATTEMPTS = 5
"""Tries of one visit status report before the doctor gives the call back (``POST .../drop``)."""
STATUS_RETRY_WALL_S = 5.0
"""After a refused ``doctor.status``, wall seconds before the trace's availability is sent again."""


class VisitOver(Exception):
    """The call left the doctor (cancelled, reassigned) while they were on it."""


def lerp(a: Fix, b: Fix, t: float) -> tuple[float, float]:
    """The position at time ``t`` (epoch s) on the straight line from fix ``a`` to fix ``b``."""
    if b.ts <= a.ts:
        return (b.lat, b.lon)
    w = min(max((t - a.ts) / (b.ts - a.ts), 0.0), 1.0)
    return (a.lat + (b.lat - a.lat) * w, a.lon + (b.lon - a.lon) * w)


class DoctorApp:
    """One doctor: ``connect()`` during set-up, then ``run()`` until the context stops."""

    def __init__(self, ctx: Context, account: Account, trace: Trace) -> None:
        self.ctx = ctx
        self.account = account
        self.trace = trace
        self.name = f"doctor:{trace.id}"
        self.rng = ctx.rng(self.name)
        self.client = make_client(ctx, ctx.book.token_source(account))
        self.state = "offline"
        """What the doctor is doing: offline, available, paused, offered, on_call (for utilisation)."""
        self.lat, self.lon = trace.fixes[0].lat, trace.fixes[0].lon
        self._index = 0  # the next fix of the trace
        self._dark = True  # in a gap of the trace (or before its first fix, or after its last)
        self._status_sent: str | None = None
        self._status_retry_at = 0.0  # loop time before which a refused status is not sent again
        self._offer: str | None = None
        self._visit: asyncio.Task[None] | None = None
        self._visit_call: str | None = None
        self._replied: set[str] = set()

    @property
    def id(self) -> str:
        """The doctor's user id."""
        return self.account.user_id

    async def connect(self) -> None:
        """Open the socket and subscribe to the doctor's channel."""
        await self.client.connect()
        await subscribe(self.ctx.recorder, self.client, self.name, f"doctor:{self.id}")

    async def run(self) -> None:
        """Follow the trace and answer events until the run stops."""
        reader = asyncio.create_task(self._read(), name=f"{self.name}:read")
        try:
            await self._follow_trace()
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            if self._visit is not None:
                self._visit.cancel()
                with contextlib.suppress(BaseException):
                    await self._visit

    async def close(self) -> None:
        """Go offline (best effort) and close the socket."""
        with contextlib.suppress(Exception):
            if self._visit is None and self._offer is None and self._status_sent not in (None, "offline"):
                await self.client.request("doctor.status", status="offline", timeout_s=2)
        await self.client.close()

    # --- the trace --------------------------------------------------------------------------------

    def _trace_fix(self) -> Fix:
        """The last fix of the trace that has come."""
        return self.trace.fixes[max(self._index - 1, 0)]

    def _occupied(self) -> bool:
        return bool(self._trace_fix().occupied) if self._index > 0 else False

    def _in_gap(self) -> bool:
        """True before the first fix, after the last, and in a gap longer than the offline limit."""
        fixes = self.trace.fixes
        if self._index == 0 or self._index >= len(fixes):
            return True
        return (
            fixes[self._index].ts - fixes[self._index - 1].ts > self.ctx.behaviour.replay_offline_gap_min * 60
        )

    def _position_now(self) -> tuple[float, float]:
        """Where the real cab is now: between the last fix and the next (straight line)."""
        fixes = self.trace.fixes
        if self._index == 0:
            return (fixes[0].lat, fixes[0].lon)
        if self._index >= len(fixes) or self._in_gap():
            last = fixes[self._index - 1]
            return (last.lat, last.lon)
        return lerp(fixes[self._index - 1], fixes[self._index], self.ctx.clock.now())

    async def _follow_trace(self) -> None:
        clock, behaviour = self.ctx.clock, self.ctx.behaviour
        fixes = self.trace.fixes
        loop = asyncio.get_running_loop()
        last_sent = -math.inf
        while not self.ctx.stop.is_set():
            next_fix = clock.wall_until(fixes[self._index].ts) if self._index < len(fixes) else math.inf
            alive = not self._dark or self._visit is not None
            keepalive = (last_sent + behaviour.wall_keepalive_s - loop.time()) if alive else math.inf
            delay = min(next_fix, keepalive, 5.0)
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            moved = False
            while self._index < len(fixes) and clock.wall_until(fixes[self._index].ts) <= 0:
                self._index += 1  # fixes that came (while on a visit they pass unseen)
                moved = True
            if self._visit is not None:  # the visit sends its own fixes; keep the phone alive between
                if loop.time() - last_sent >= behaviour.wall_keepalive_s:
                    await self._send_fix(self.lat, self.lon)
                    last_sent = loop.time()
                continue
            self._dark = self._in_gap()
            if moved or not self._dark:
                if moved and self._index > 0:
                    fix = self._trace_fix()
                    position = (fix.lat, fix.lon)
                else:
                    position = self._position_now()
                await self._send_fix(*position)
                last_sent = loop.time()
            await self._sync_status()

    async def _send_fix(self, lat: float, lon: float) -> None:
        self.lat, self.lon = lat, lon
        try:
            await self.client.send("location", lat=lat, lon=lon, acc=ACCURACY_M, ts=int(now_ms()))
            self.ctx.recorder.fixes_sent += 1
        except ConnectionLost:
            self.ctx.recorder.error("location", "connection_lost")

    def _wanted_status(self) -> str:
        if self._dark:
            return "offline"
        return "paused" if self._occupied() else "available"

    async def _sync_status(self, force: bool = False) -> None:
        """Tell the server the trace's availability, unless an offer or a visit is under way."""
        if self._visit is not None or self._offer is not None:
            return
        wanted = self._wanted_status()
        self.state = wanted
        loop = asyncio.get_running_loop()
        if not force and (wanted == self._status_sent or loop.time() < self._status_retry_at):
            return
        try:
            answer = await self.client.request("doctor.status", status=wanted)
            self._status_sent = str(answer.get("status", wanted))
        except ClientError as exc:
            # e.g. forbidden: an offer arrived meanwhile (its answer resyncs); else try again later
            self._status_sent = None
            self._status_retry_at = loop.time() + STATUS_RETRY_WALL_S
            self.ctx.recorder.error("doctor.status", exc.code)
        except (ConnectionLost, TimeoutError) as exc:
            self._status_sent = None
            self.ctx.recorder.error("doctor.status", type(exc).__name__)

    # --- events -------------------------------------------------------------------------------------

    async def _read(self) -> None:
        recorder = self.ctx.recorder
        async for item in self.client.events():
            track_offsets(recorder, self.name, item)
            if not isinstance(item, Event):
                continue
            data: Any = item.data
            if item.type == "offer.created":
                self.ctx.spawn(self._answer_offer(data), f"{self.name}:offer")
            elif item.type in ("offer.expired", "offer.withdrawn"):
                if data.get("offer") == self._offer:
                    self._offer = None
                    self.ctx.spawn(self._sync_status(force=True), f"{self.name}:status")
            elif item.type in ("call.cancelled", "call.unassigned"):
                if self._visit is not None and data.get("call") == self._visit_call:
                    self._visit.cancel()
            elif item.type == "call.status" and isinstance(data, dict):
                recorder.observe(str(data["call"]), str(data["status"]), int(data["version"]))
            elif item.type == "doctor.status" and isinstance(data, dict):
                self._status_sent = str(data.get("status"))
            elif item.type == "chat.message" and isinstance(data, dict):
                self._on_chat(data)

    def _on_chat(self, data: dict[str, Any]) -> None:
        sender = (data.get("sender") or {}).get("id")
        if sender == self.id:
            return
        sent = self.ctx.recorder.chat_sent_ms.get(str(data.get("client_msg_id")))
        if sent is not None:
            self.ctx.recorder.chat_latency_ms.append(now_ms() - sent)
        call_id = str(data.get("call"))
        if call_id not in self._replied and call_id == self._visit_call:
            self._replied.add(call_id)
            self.ctx.spawn(self._chat(call_id), f"{self.name}:chat")

    async def _chat(self, call_id: str) -> None:
        msg_id = f"d-{call_id}"
        self.ctx.recorder.chat_sent_ms[msg_id] = now_ms()
        try:
            await self.client.request("chat.send", call=call_id, client_msg_id=msg_id, text="On my way.")
        except (ClientError, ConnectionLost, TimeoutError) as exc:
            self.ctx.recorder.error("chat.send", getattr(exc, "code", type(exc).__name__))

    # --- offers -----------------------------------------------------------------------------------

    async def _answer_offer(self, data: dict[str, Any]) -> None:
        behaviour, recorder = self.ctx.behaviour, self.ctx.recorder
        offer_id, call = str(data["offer"]), data["call"]
        self._offer = offer_id  # first: the winding-down visit below must not resend our status
        previous = self._visit
        if previous is not None:
            # The last call ended on the server (cancelled, reassigned) and its visit is winding down
            # here; the server offers only free doctors, so it cannot be a visit under way.
            await asyncio.wait({previous}, timeout=5.0)
            if not previous.done():
                recorder.error("offer", "while_on_call")
        self.state = "offered"
        delay = self.rng.uniform(*behaviour.wall_accept_delay_s)
        if self.rng.random() < behaviour.accept_share:
            await asyncio.sleep(delay)
            try:
                await self.client.request("offer.accept", offer=offer_id)
            except (ClientError, ConnectionLost, TimeoutError) as exc:
                recorder.error("offer.accept", getattr(exc, "code", type(exc).__name__))
                # No answer: the accept may have gone through all the same. Ask, as an app would.
                if isinstance(exc, ClientError) or not await self._assigned_to_me(str(call["id"])):
                    if self._offer == offer_id:
                        self._offer = None
                    await self._sync_status(force=True)
                    return
            recorder.actions["offer accepted"] += 1
            self._offer = None
            self._visit_call = str(call["id"])
            self._visit = asyncio.current_task()
            try:
                await self._run_visit(call)
            finally:
                if self._visit is asyncio.current_task():
                    self._visit = None
                    self._visit_call = None
                    await self._rejoin()
        elif self.rng.random() < behaviour.decline_share:
            await asyncio.sleep(delay)
            try:
                await self.client.request("offer.decline", offer=offer_id, reason="replay: declined")
                recorder.actions["offer declined"] += 1
            except (ClientError, ConnectionLost, TimeoutError) as exc:
                recorder.error("offer.decline", getattr(exc, "code", type(exc).__name__))
            if self._offer == offer_id:
                self._offer = None
            await self._sync_status(force=True)
        else:
            recorder.actions["offer left to expire"] += 1  # offer.expired clears it

    async def _assigned_to_me(self, call_id: str) -> bool:
        """Whether the server has ``call_id`` assigned to this doctor (``GET /v1/calls/{id}``)."""
        try:
            call = await self.ctx.rest.call(
                "GET", f"/v1/calls/{call_id}", token=self.ctx.book.token_source(self.account)
            )
        except Exception:
            return False
        return call.get("doctor_id") == self.id and call.get("status") in ("assigned", "en_route")

    # --- the visit --------------------------------------------------------------------------------

    async def _run_visit(self, call: dict[str, Any]) -> None:
        self.state = "on_call"
        call_id = str(call["id"])
        channel = f"call:{call_id}"
        try:
            await subscribe(self.ctx.recorder, self.client, self.name, channel)
        except (ClientError, ConnectionLost, TimeoutError) as exc:
            self.ctx.recorder.error("doctor.subscribe", getattr(exc, "code", type(exc).__name__))
        try:
            await self._visit_steps(call_id, float(call["lat"]), float(call["lon"]))
        except asyncio.CancelledError:
            if self.ctx.stop.is_set():
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # the call left the doctor (our own cancel): carry on
            self.ctx.recorder.actions["visit ended by the call"] += 1
        except VisitOver:
            self.ctx.recorder.actions["visit ended by the call"] += 1
        except ApiError as exc:
            # The server kept failing: give the call back so it is not left with a doctor who left.
            self.ctx.recorder.actions["visit given up (server errors)"] += 1
            self.ctx.recorder.error("visit", exc.code)
            await self._drop(call_id)
        finally:
            with contextlib.suppress(Exception):
                await self.client.unsubscribe(channel)

    async def _drop(self, call_id: str) -> None:
        """``POST /v1/calls/{id}/drop``: back to searching without this doctor (best effort)."""
        try:
            call = await self.ctx.rest.call(
                "POST",
                f"/v1/calls/{call_id}/drop",
                token=self.ctx.book.token_source(self.account),
                json={"reason": "replay: the doctor's app gave up after server errors"},
            )
            self.ctx.recorder.observe(call_id, str(call["status"]), int(call["version"]))
        except Exception as exc:
            self.ctx.recorder.error("drop", getattr(exc, "code", type(exc).__name__))

    async def _visit_steps(self, call_id: str, lat: float, lon: float) -> None:
        behaviour, clock = self.ctx.behaviour, self.ctx.clock
        await self._report(call_id, "en_route")
        start_lat, start_lon = self.lat, self.lon
        distance = haversine_m(start_lat, start_lon, lat, lon)
        duration = distance * behaviour.road_factor / (behaviour.drive_kmh / 3.6)
        gap_wall = max(clock.to_wall(behaviour.replay_drive_fix_s), WALL_MIN_FIX_GAP_S)
        t0 = clock.now()
        w = 0.0
        while w < 1.0:  # where the car is when it wakes: a late wake-up skips fixes, never bursts them
            await asyncio.sleep(min(gap_wall, max(clock.wall_until(t0 + duration), 0.0)))
            w = 1.0 if duration <= 0 else min((clock.now() - t0) / duration, 1.0)
            await self._send_fix(start_lat + (lat - start_lat) * w, start_lon + (lon - start_lon) * w)
        await self._report(call_id, "arrived")
        await self._report(call_id, "in_progress")
        await clock.sleep(self.rng.uniform(*behaviour.replay_visit_min) * 60)
        await self._report(call_id, "completed")
        self.ctx.recorder.actions["visit completed"] += 1

    async def _report(self, call_id: str, status: str) -> None:
        """``POST /v1/calls/{id}/status``, retried like an app would: on a server error or a
        ``conflict`` (the call changed meanwhile) after a backoff; on ``invalid_transition`` the call is
        read back (an earlier attempt may have gone through). Raises :class:`VisitOver` when the call
        left the doctor (cancelled, reassigned), ``ApiError`` when the server keeps failing."""
        token = self.ctx.book.token_source(self.account)
        for attempt in range(REPORT_ATTEMPTS):
            try:
                call = await self.ctx.rest.call(
                    "POST", f"/v1/calls/{call_id}/status", token=token, json={"status": status}
                )
                break
            except ApiError as exc:
                self.ctx.recorder.error(f"visit.{status}", exc.code)
                if exc.code == "invalid_transition":
                    call = await self.ctx.rest.call("GET", f"/v1/calls/{call_id}", token=token)
                    if call["status"] == status and call.get("doctor_id") == self.id:
                        break  # our earlier attempt went through
                    raise VisitOver(exc.code) from None
                if exc.status in (403, 404):
                    raise VisitOver(exc.code) from None
                if attempt == REPORT_ATTEMPTS - 1 or not (exc.status >= 500 or exc.code == "conflict"):
                    raise
                await asyncio.sleep(0.2 * 2**attempt)
        self.ctx.recorder.observe(call_id, str(call["status"]), int(call["version"]))

    async def _rejoin(self) -> None:
        """Back on the trace after a visit: where the real cab is now, with its availability."""
        if self.ctx.stop.is_set() or self._offer is not None:  # run over / the next offer came
            return
        self.state = "available"
        self._dark = self._in_gap()
        if not self._dark:
            await self._send_fix(*self._position_now())
        await self._sync_status(force=True)
