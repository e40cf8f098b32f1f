"""The WebSocket gateway at ``/v1/ws``, one concept per module.

- ``gateway.py``: :class:`~server.ws.gateway.Gateway`, the parts tied together (life cycle, op
  registry, what a connection does when it opens and closes);
- ``transport.py``: one connection's socket: accept, authenticate, the read loop, the writer, the idle
  timer, close codes;
- ``intake.py``: one received frame: size, decoding, metrics, rate limits and flood, location fixes,
  the registered ops;
- ``subscriptions.py``: ``subscribe``/``unsubscribe``, the channels' access rules, access that ends;
- ``presence.py``: this process's presence entries and their refresh;
- ``connection.py``: what the gateway holds per connection;
- ``ops.py``: the ops other subsystems own (offers, chat, SOS, doctor status);
- ``asgi.py`` and ``uvicorn_protocol.py``: the bypasses of Starlette's router and of uvicorn's queue.

docs/protocol.md is the client's reference.
"""
