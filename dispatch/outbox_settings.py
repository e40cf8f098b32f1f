"""The tunables of the transactional outbox (``dispatch/publisher.py``, ``dispatch/outbox_relay.py``).

Times are milliseconds unless the name says seconds. The server reads them from ``TOT_OUTBOX_*``
(``server/settings.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """``publish_timeout_ms``: the longest a committing request waits for its own publish before it
    leaves the rows to the relay (and answers success: the change is committed).
    ``commit_lease_ms``: how long after staging a row belongs to its committer (the relay leaves it
    alone meanwhile, so that one event is not published by two processes at once in the normal case).
    ``skip_after_failure_ms``: after an immediate publish fails, how long new rows skip it and go
    straight to the relay (claimable at once, in id order) instead of each waiting out the timeout.
    ``mark_interval_ms``: how long published ids wait to be marked, so that one UPDATE marks them all
    (one transaction per interval while events flow: on SQLite a commit, an fsync of ~0.5 ms on the
    event loop; it stays far below ``commit_lease_ms``, so the relay does not take rows their
    committer has published).
    ``relay_interval_ms``: how often the relay looks for unpublished rows; ``relay_lease_ms``: how
    long the active relay's lease lasts (renewed on each pass; a dead relay is replaced after it).
    ``relay_batch``: rows per relay publish. ``relay_backoff_max_ms``: the longest pause after
    failed relay publishes (doubling from ``relay_interval_ms``). ``retention_s``: how long published
    rows are kept; ``prune_batch``: rows deleted per pruning statement; ``prune_interval_ms``: how
    often the relay prunes. ``notify_types``: the event types the notification rules read
    (``server/notify/rules.py``); rows of other types are staged already marked ``notified_ms`` (the
    rules never look at them), and with none (the default) no row waits for the rules."""

    publish_timeout_ms: int = 500
    commit_lease_ms: int = 5_000
    skip_after_failure_ms: int = 1_000
    mark_interval_ms: int = 1_000
    relay_interval_ms: int = 500
    relay_lease_ms: int = 5_000
    relay_batch: int = 200
    relay_backoff_max_ms: int = 10_000
    retention_s: int = 600
    prune_batch: int = 1_000
    prune_interval_ms: int = 10_000
    notify_types: frozenset[str] = frozenset()
