"""The patient app: one pickup of the calls file, as a patient creating a call and following it.

Behaviour model (times: replay time unless marked wall):

- At the pickup's time the app opens its socket, creates the call (``POST /v1/calls``, ``urgent``, the
  run's specialty, at the pickup's place, with an ``Idempotency-Key`` so a retried request cannot
  create a second call), subscribes to ``call:<id>`` and reads the call once over REST (events before
  the subscription are not on the socket).
- It follows the call's ``call.status`` events and the doctor's ``doctor.position`` (tracking latency:
  the fix's ``ts``, set by the doctor app from the same wall clock, to its arrival here).
- Once a doctor is assigned it sends one chat line (chat latency: send to the doctor's receipt, and
  the doctor's answer back here); a share ``sos_share`` of patients then raise an SOS ``emergency``.
- A share ``cancel_share`` cancel, ``replay_cancel_after_min`` after creating the call (a cancel the
  life cycle refuses by then, e.g. the doctor has arrived, is counted and the visit goes on).
- After ``completed`` it rates the visit and closes. It also closes on ``cancelled`` and when the run
  stops (an escalated call a dispatcher left stays open until then).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from loadtests.replay.accounts import Account
from loadtests.replay.api import ApiError
from loadtests.replay.context import REQUEST_TIMEOUT_S, Context, make_client, subscribe, track_offsets
from loadtests.replay.inputs import CallSpec
from loadtests.replay.recorder import FINAL_STATUSES, CallLog, now_ms
from realtime.client import ClientError, ConnectionLost, Event, RecoveryFailed

PATIENT_CANCELLABLE = frozenset({"created", "searching", "offered", "assigned", "en_route", "escalated"})
"""Statuses from which the life cycle lets a patient cancel (dispatch/lifecycle.py)."""


class PatientApp:
    """One call's patient: ``run()`` from the call's time until the call ends or the run stops."""

    def __init__(self, ctx: Context, account: Account, spec: CallSpec, run_id: str) -> None:
        self.ctx = ctx
        self.account = account
        self.spec = spec
        self.name = f"patient:{spec.key}"
        self.rng = ctx.rng(self.name)
        self.idempotency_key = f"replay:{run_id}:{spec.key}"[:128]
        self.log = CallLog(spec.key, spec.ts, account.email)
        behaviour = ctx.behaviour
        self.log.cancel_planned = self.rng.random() < behaviour.cancel_share
        self.log.sos_planned = self.rng.random() < behaviour.sos_share
        self.client = make_client(ctx, ctx.book.token_source(account))
        self._done = asyncio.Event()
        self._requests: list[asyncio.Task[None]] = []  # socket requests in flight (chat, SOS)
        self._doctor: str | None = None

    @property
    def call_id(self) -> str | None:
        """The server's id of the call (once created)."""
        return self.log.call_id

    async def run(self) -> None:
        """Create the call and follow it (see the module docstring)."""
        recorder = self.ctx.recorder
        recorder.new_call(self.log)
        try:
            await self.client.connect()
        except Exception as exc:
            self.log.error = f"connect: {exc!r}"
            recorder.error("patient.connect", type(exc).__name__)
            return
        try:
            if not await self._create():
                return
            reader = asyncio.create_task(self._read(), name=f"{self.name}:read")
            await subscribe(recorder, self.client, self.name, f"call:{self.call_id}")
            await self._reread()
            if self.log.cancel_planned:
                self.ctx.spawn(self._cancel_later(), f"{self.name}:cancel")
            stop = asyncio.create_task(self.ctx.stop.wait())
            done = asyncio.create_task(self._done.wait())
            await asyncio.wait({reader, stop, done}, return_when=asyncio.FIRST_COMPLETED)
            for task in (reader, stop, done):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            if self._requests and not self.ctx.stop.is_set():  # let their answers come before closing
                await asyncio.wait(self._requests, timeout=REQUEST_TIMEOUT_S)
        except (ClientError, ConnectionLost, TimeoutError) as exc:
            recorder.error("patient", getattr(exc, "code", type(exc).__name__))
        finally:
            await self.client.close()

    async def _create(self) -> bool:
        spec = self.spec
        body = {
            "address": f"Replay pickup {spec.id} at {spec.lat:.5f},{spec.lon:.5f}",
            "lat": spec.lat,
            "lon": spec.lon,
            "urgency": "urgent",
            "specialty": self.ctx.specialty,
            "symptoms": "fever since this morning",
        }
        self.log.created_ms = now_ms()
        try:
            call = await self.ctx.rest.call(
                "POST",
                "/v1/calls",
                token=self._token(),
                json=body,
                headers={"Idempotency-Key": self.idempotency_key},
            )
        except Exception as exc:
            self.log.error = f"create: {exc!r}"
            self.ctx.recorder.error("call.create", getattr(exc, "code", type(exc).__name__))
            return False
        self.ctx.recorder.created(self.log, str(call["id"]), int(call["version"]), str(call["status"]))
        return True

    def _token(self) -> Any:
        return self.ctx.book.token_source(self.account)

    async def _reread(self) -> None:
        """The call over REST (after subscribing, and after a ``RecoveryFailed``)."""
        try:
            call = await self.ctx.rest.call("GET", f"/v1/calls/{self.call_id}", token=self._token())
        except ApiError as exc:
            self.ctx.recorder.error("call.get", exc.code)
            return
        await self._on_status(str(call["status"]), int(call["version"]))

    async def _read(self) -> None:
        recorder = self.ctx.recorder
        async for item in self.client.events():
            track_offsets(recorder, self.name, item)
            if isinstance(item, RecoveryFailed):
                await self._reread()
                continue
            if not isinstance(item, Event):
                continue
            data: Any = item.data
            if item.type == "call.status":
                if data.get("doctor"):
                    self._doctor = str(data["doctor"]["id"])
                await self._on_status(str(data["status"]), int(data["version"]))
            elif item.type == "doctor.position":
                recorder.tracking_latency_ms.append(now_ms() - float(data["ts"]))
            elif item.type == "chat.message":
                if (data.get("sender") or {}).get("id") != self.account.user_id:
                    sent = recorder.chat_sent_ms.get(str(data.get("client_msg_id")))
                    if sent is not None:
                        recorder.chat_latency_ms.append(now_ms() - sent)
            elif item.type == "sos.acknowledged":
                recorder.sos_acked_ms.setdefault(str(data["id"]), now_ms())

    async def _on_status(self, status: str, version: int) -> None:
        assert self.call_id is not None
        self.ctx.recorder.observe(self.call_id, status, version)
        if status == "assigned" and not self.log.chat_sent:
            self.log.chat_sent = True
            self._requests.append(self.ctx.spawn(self._chat(), f"{self.name}:chat"))
            if self.log.sos_planned and not self.log.sos_raised:
                self.log.sos_raised = True
                self._requests.append(self.ctx.spawn(self._sos(), f"{self.name}:sos"))
        elif status == "completed" and not self.log.rated:
            self.log.rated = True
            await self._rate()
        if status in FINAL_STATUSES:
            self._done.set()

    async def _chat(self) -> None:
        msg_id = f"p-{self.call_id}"
        self.ctx.recorder.chat_sent_ms[msg_id] = now_ms()
        try:
            await self.client.request(
                "chat.send",
                call=self.call_id,
                client_msg_id=msg_id,
                text="Hello doctor, the door code is 42.",
            )
        except (ClientError, ConnectionLost, TimeoutError) as exc:
            self.ctx.recorder.error("chat.send", getattr(exc, "code", type(exc).__name__))

    async def _sos(self) -> None:
        sent = now_ms()
        try:
            answer = await self.client.request(
                "sos",
                kind="emergency",
                call=self.call_id,
                lat=self.spec.lat,
                lon=self.spec.lon,
                message="replay: the patient feels worse",
            )
            self.ctx.recorder.sos_raised_ms[str(answer["sos"]["id"])] = sent
            self.ctx.recorder.actions["sos raised"] += 1
        except (ClientError, ConnectionLost, TimeoutError) as exc:
            self.ctx.recorder.error("sos", getattr(exc, "code", type(exc).__name__))

    async def _rate(self) -> None:
        low, high = self.ctx.behaviour.rating_range
        try:
            await self.ctx.rest.call(
                "POST",
                f"/v1/calls/{self.call_id}/rating",
                token=self._token(),
                json={"score": self.rng.randint(low, high), "comment": "replay"},
            )
            self.ctx.recorder.actions["visit rated"] += 1
        except ApiError as exc:
            self.ctx.recorder.error("rating", exc.code)

    async def _cancel_later(self) -> None:
        after_min = self.rng.uniform(*self.ctx.behaviour.replay_cancel_after_min)
        await self.ctx.clock.sleep_until(self.spec.ts + after_min * 60)
        if self._done.is_set() or self.log.status not in PATIENT_CANCELLABLE:
            self.ctx.recorder.actions["cancel skipped (too late)"] += 1
            return
        try:
            call = await self.ctx.rest.call(
                "POST",
                f"/v1/calls/{self.call_id}/cancel",
                token=self._token(),
                json={"reason": "replay: the patient changed their mind"},
            )
        except ApiError as exc:
            self.ctx.recorder.error("cancel", exc.code)  # e.g. the doctor arrived meanwhile
            return
        self.log.cancelled_by_patient = True
        self.ctx.recorder.actions["call cancelled by patient"] += 1
        assert self.call_id is not None
        self.ctx.recorder.observe(self.call_id, str(call["status"]), int(call["version"]))
