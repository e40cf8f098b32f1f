"""The app wires the live engine's care (server/engine_care.py): the first check rebuilds a fresh
engine before serving, the repair sweep's entry is armed, and the counters are exposed."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import app_client_for, make_settings, redis_test_url


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_a_fresh_engine_is_rebuilt_at_start_and_counted(sqlite_database_url: str, engine: str) -> None:
    overrides: dict[str, object] = {}
    if engine == "redis":  # a prefix of its own: an empty engine, as after a Redis restart
        overrides = {"engine_url": redis_test_url(), "engine_prefix": f"test:{uuid.uuid4().hex[:12]}:"}
    async with app_client_for(make_settings(sqlite_database_url, **overrides)) as http:
        app_services = http._transport.app.state.services  # type: ignore[attr-defined]
        text = (await http.get("/metrics")).text
        assert "tot_engine_rebuilds_total 1.0" in text
        assert 'tot_engine_epoch_events_total{outcome="rebuilt"} 1.0' in text
        assert "tot_ws_reannounce_requests_total 0.0" in text
        assert (await app_services.engine.deadlines.get("repair:sweep")) is not None
        if engine == "redis":
            redis = app_services.engine.redis
            keys = [k async for k in redis.scan_iter(match=f"{overrides['engine_prefix']}*")]
            await redis.delete(*keys)
