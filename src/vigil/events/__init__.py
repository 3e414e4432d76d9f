"""Server-side storage of security events (the `POST`/`GET /api/v1/events` stream)."""

from vigil.events.store import EventStore

__all__ = ["EventStore"]
