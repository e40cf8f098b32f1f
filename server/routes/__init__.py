"""REST routes under ``/v1``, one module per resource, all registered on :data:`api`."""

from server.api import Api

api = Api()
