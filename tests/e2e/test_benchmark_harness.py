"""The dispatch and SOS benchmarks' harness, run with tiny numbers so it does not rot: a real server
process, real sockets, the measurements it reports. It checks that every measured event was matched
(calls got offers, every console read every SOS, tracked doctors' fixes reached their patients), never
how fast (the broker benchmark: that every variant delivered every event, round after round): speed
goals live in the benchmarks themselves (docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

from loadtests import bench_broker, bench_dispatch, bench_sos
from tests.conftest import redis_test_url

TINY = ["--engines", "memory", "--no-pin", "--warmup", "1", "--doctors", "30", "--seconds", "2"]


def test_dispatch_benchmark_matches_every_call_to_its_offer(tmp_path: Path) -> None:
    out = tmp_path / "dispatch.json"
    args = [*TINY, "--calls-per-s", "3", "--patients", "3", "--visit-s", "0.5", "--json", str(out)]
    (result,) = bench_dispatch.run(args)
    assert result.calls == 6 and result.errors == {}
    assert result.created == result.offered == result.calls and result.no_offer == 0
    assert result.response_to_offer is not None and result.response_to_offer.n == result.calls
    assert result.accepted + result.declined >= result.calls
    written = json.loads(out.read_text())
    assert written["results"][0]["offered"] == result.offered


def test_sos_benchmark_matches_every_delivery(tmp_path: Path) -> None:
    out = tmp_path / "sos.json"
    args = [*TINY, "--dispatchers", "3", "--tracked", "3", "--sos-per-s", "2", "--json", str(out)]
    (result,) = bench_sos.run(args)
    assert result.sos == 4 and result.sos_failed == 0 and result.errors == {}
    assert result.to_console is not None and result.to_console.n == result.sos * 3
    assert result.console_missing == 0 and result.doctors_missing == 0
    assert result.fix_to_patient is not None and result.fix_to_patient.n > 0
    assert json.loads(out.read_text())["results"][0]["sos"] == result.sos


def test_broker_benchmark_measures_every_variant(tmp_path: Path) -> None:
    out = tmp_path / "broker.json"
    results = bench_broker.main(["--quick", "--redis-url", redis_test_url(), "--json", str(out)])
    # hiredis is a dependency (pyproject), so both parsers are measured beside the memory broker.
    assert set(results["rows"]) == {
        "memory publish_many",
        "redis publish loop, python parser",
        "redis publish_many, python parser",
        "redis publish loop, hiredis",
        "redis publish_many, hiredis",
        # The outbox's keyed publishes (one key per event), beside the unkeyed ones.
        "memory publish_many, keyed",
        "redis publish_many, keyed, python parser",
        "redis publish_many, keyed, hiredis",
    }
    assert all(row["batch_p50_ms"] > 0 for row in results["rows"].values())
    assert len(results["ratios"]) == 10  # 4 publish_many/loop and parser ratios, 6 keyed/unkeyed
    assert json.loads(out.read_text())["rows"] == results["rows"]
