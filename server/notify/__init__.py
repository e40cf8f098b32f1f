"""Notifications that reach a closed app (issue 19), driven by the transactional outbox.

One concept per module::

    rules.py      outbox event -> (kind, audience, template values)        pure
    deriver.py    reads outbox rows under a lease, writes notification rows (one transaction each batch)
    templates.py  the texts, Russian and English, in the person's language
    channels.py   the channel interface (inbox, telegram, email, sms, webpush) and its errors
    throttle.py   per-address pace (shared, in the database) and per-provider rate (per process)
    sender.py     claims due rows with a lease, sends, retries with backoff, honours retry_after
    telegram*.py  the Telegram Bot API channel, the webhook, account links
    webpush.py    the web push channel (RFC 8030/8291), push_payload.py what it sends, vapid.py our key,
                  push_acks.py + offer_seen.py: an offer the app acknowledged on its socket is not pushed
    fake_*.py     loopback fakes of the providers (tests and the demo; fake_push.py decrypts)

docs/notifications.md describes the pipeline, its settings and its guarantees.
"""
