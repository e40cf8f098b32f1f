"""Replay of a real city against a running server: GPS traces as doctors, pickups as patient calls.

``tot-dispatch replay`` (``loadtests/replay/cli.py``) is the command; ``docs/replay.md`` describes the
input formats, the behaviour model and the report. One module per concept:

- ``options``: every knob of a run; ``inputs``: CSV readers and the glitch rule; ``scale``: cloning
  the fleet; ``clock``: the compressed clock;
- ``api``: REST over httpx; ``accounts``: accounts through the public API, cached in a state file;
- ``doctor``, ``patient``, ``dispatcher``: the simulated apps (``realtime.client.TotClient`` sockets);
  ``context``: what they share; ``recorder``: what they saw; ``monitor``: server metrics, doctor
  states, the progress bar;
- ``runner``: one run, start to end; ``collect``: the server's record of every call;
  ``integrity``: the checks; ``stats`` and ``numbers``: the figures; ``charts`` and ``report``: the PNG
  charts, the Markdown and the files of the report.
"""
