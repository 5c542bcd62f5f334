"""Signals between kassa's processes through the database: PostgreSQL's LISTEN/NOTIFY.

A notification sent inside a transaction is delivered to every listening session when
(and only if) that transaction commits, so a signal can never announce a change that was
rolled back. kassa uses it to tell every API process at once that an API key was revoked
(`kassa.services.api_keys`), so a process may cache keys without serving a revoked one.

SQLite has no such channel; `Listener.live` is then always False and callers must not
rely on being told.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger("kassa.notify")

RECONNECT_S = 1.0
POLL_S = 0.5  # how often the thread looks at its stop flag while nothing arrives


def notify(session: Session, channel: str, payload: str) -> None:
    """Send `payload` on `channel` when `session`'s transaction commits (PostgreSQL only;
    nothing on SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
        )


class Listener:
    """A daemon thread LISTENing on one channel over a connection of its own.

    `on_message(payload)` runs for each notification. `on_gap()` runs whenever the
    connection is (re)established or lost: notifications may have been missed in
    between, so whatever was derived from them must be thrown away. `live` is True only
    while the connection is up and listening.
    """

    def __init__(
        self,
        database_url: str,
        channel: str,
        on_message: Callable[[str], None],
        on_gap: Callable[[], None],
    ) -> None:
        url = make_url(database_url)
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._channel = channel
        self._on_message = on_message
        self._on_gap = on_gap
        self._stop = threading.Event()
        self._live = False
        self._thread = threading.Thread(
            target=self._run, name=f"kassa-listen-{channel}", daemon=True
        )

    @property
    def live(self) -> bool:
        return self._live

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it closes its connection within POLL_S (it is a daemon:
        nobody waits for it, a process shutting down need not either)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                log.warning("listening on %s failed (%s); reconnecting", self._channel, exc)
            finally:
                self._live = False
                self._on_gap()
            self._stop.wait(RECONNECT_S)

    def _listen(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(self._channel)))
            self._on_gap()  # anything cached before this point was not covered
            self._live = True
            while not self._stop.is_set():
                for message in conn.notifies(timeout=POLL_S):
                    self._on_message(message.payload)
