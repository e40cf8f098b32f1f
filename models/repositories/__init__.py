"""Repositories: the only code that issues SQL for its aggregate. Handlers call these, never the ORM."""
