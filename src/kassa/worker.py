"""The background worker: runs queued jobs and periodic upkeep.

`kassa serve` runs one in a thread (in its supervisor, however many API processes it
starts); `kassa worker --concurrency N` runs N loops on threads of one process, and any
number of such processes may run against PostgreSQL at once: the queue hands each job to one
claimer (`FOR UPDATE SKIP LOCKED`; on SQLite the write lock takes them in turn).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable

from kassa.bootstrap import Kassa
from kassa.services.context import RequestContext
from kassa.services.jobs import JobHandler
from kassa.storage.errors import StorageError

log = logging.getLogger("kassa.worker")


# How often a worker asks whether the checks are due (they run every
# KASSA_CHECK_INTERVAL_S; asking is one statement).
CHECKS_POLL_S = 60


class InBackground:
    """A periodic task run on a daemon thread of its own, for work too long to run
    between jobs (the checks: minutes on a large shop, listing a provider page by page).
    Calling it starts the task unless its previous run is still going, and returns at
    once. A failure is logged; the next call tries again. A process that exits mid-run
    loses nothing: the task commits its results in one transaction at its end."""

    def __init__(self, task: Callable[[], object], name: str) -> None:
        self._task = task
        self._name = name
        self._thread: threading.Thread | None = None

    def __call__(self) -> None:
        if self.running():
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the run in progress, if any (for tests and a clean stop)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._task()
        except StorageError as exc:  # an outage: one line, as the loop reports it
            log.warning("%s: database error: %s; the next period tries again", self._name, exc)
        except Exception:
            log.exception("%s failed; the next period tries again", self._name)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        kassa: Kassa,
        *,
        name: str | None = None,
        poll_s: float = 0.5,
        batch: int = 10,
        handlers: dict[str, JobHandler] | None = None,
        max_backoff_s: float = 30.0,
        upkeep: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kassa = kassa
        self.name = name or worker_name()
        self._poll = poll_s
        self._batch = batch
        self._max_backoff = max_backoff_s
        self.handlers: dict[str, JobHandler] = {**kassa.job_handlers(), **(handlers or {})}
        self._stop = threading.Event()
        self._monotonic = monotonic  # what paces the periodic upkeep (tests pass their own)
        # the checks, stored as findings: a long run over a large shop must not hold up
        # this loop's jobs, so it runs on a thread of its own (see `InBackground`)
        self.checks = InBackground(kassa.findings.run_if_due, "kassa-checks")
        # `upkeep=False`: a loop that only runs jobs, beside one that also does the upkeep
        self._periodic: list[tuple[float, Callable[[], object], list[float]]] = (
            [
                (
                    kassa.settings.reservation_sweep_interval_s,
                    lambda: kassa.orders.release_expired_reservations(RequestContext.system()),
                    [0.0],
                ),
                # the tables that only grow: done jobs, applied events, expired keys
                (kassa.settings.prune_interval_s, kassa.pruning.run, [0.0]),
                # asks once a minute whether a run is due (`run_if_due` decides, on
                # kassa's clock, across every worker), the first time a minute after start
                (
                    min(kassa.settings.check_interval_s, CHECKS_POLL_S),
                    self.checks,
                    [monotonic()],
                ),
            ]
            if upkeep
            else []
        )

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> int:
        """Hand new events on (`services/dispatch.py`), then claim and run one batch of
        due jobs; returns how many events and jobs there were."""
        return self.kassa.dispatcher.run_once() + self.run_jobs()

    def run_jobs(self) -> int:
        """Claim and run one batch of due jobs; returns how many ran."""
        claimed = self.kassa.jobs.claim(self.name, self._batch, set(self.handlers))
        states = self.kassa.jobs.run_batch(claimed, self.name, self.handlers)  # each logs
        for job in claimed:
            if states.get(job.pk) == "lost":
                log.warning(
                    "job lost kind=%s id=%s (its lease ran out; another worker has it)",
                    job.kind,
                    job.pk,
                )
        return len(claimed)

    def _upkeep(self) -> None:
        now = self._monotonic()
        for interval, task, last in self._periodic:
            if now - last[0] >= interval:
                last[0] = now
                try:
                    task()
                except StorageError:
                    raise  # the loop reports an outage, once per cycle
                except Exception:
                    log.exception("periodic task failed; will retry")

    def run_forever(self) -> None:
        log.info("worker %s started", self.name)
        backoff = 0.0
        while not self._stop.is_set():
            try:
                self._upkeep()
                ran = self.run_once()
            except StorageError as exc:  # an outage: one line a cycle, waiting longer each time
                backoff = min(self._max_backoff, max(self._poll, backoff * 2))
                log.warning("database error: %s; retrying in %.1f s", exc, backoff)
                self._stop.wait(backoff)
                continue
            except Exception:
                log.exception("worker loop error; backing off")
                ran = 0
            if backoff:
                log.info("database is back; worker %s resumes", self.name)
                backoff = 0.0
            if not ran:
                self._stop.wait(self._poll)
        log.info("worker %s stopped", self.name)

    def drain(self, max_rounds: int = 1000) -> int:
        """Run until no job is due (for tests and `kassa jobs run`)."""
        total = 0
        for _ in range(max_rounds):
            ran = self.run_once()
            total += ran
            if not ran:
                break
        return total


class SenderThreads:
    """Threads that send what the worker owes someone outside (webhook deliveries, the
    buyer's e-mails), apart from the job loops: a send waits on someone else's server (up
    to 10 s for a webhook, KASSA_SMTP_TIMEOUT_S a reply for SMTP), and jobs must not wait
    behind it, nor it behind them. Each thread calls `send_one(owner)`, which claims one
    due item under a lease, sends it and records the outcome, and says whether there was
    one; so any number of threads, in any number of processes, never take the same item.

    Idle, the pool asks about once per `poll_s` in all, not once per thread: an idle
    thread waits `poll_s` times the pool's size, spread at random over half to one and a
    half of that so that the threads' turns interleave, and a thread that finds something
    wakes them all (there may be more: each then claims until none is left). Threads
    stuck in a send (an endpoint that hangs) take their turns out for as long, and the
    others keep theirs, so a new item waits a little longer, never for them. Eight idle
    webhook threads asking every `poll_s` on their own would send 16 claims a second to
    the database, from every worker process, around the clock.

    `stop()` only sets flags (safe from a signal handler): a thread finishes the item it
    is sending, recording its outcome, before it ends. A database outage is one line a
    cycle, waiting longer each time, as in the job loop."""

    def __init__(
        self,
        send_one: Callable[[str], bool],
        threads: int,
        *,
        label: str,
        poll_s: float,
        max_backoff_s: float = 30.0,
        name: str | None = None,
    ) -> None:
        self._send_one = send_one
        self._label = label
        self._poll = poll_s
        self._max_backoff = max_backoff_s
        self._stop = threading.Event()
        self._wake = threading.Event()  # set: there may be more to send (or: stop)
        self._turns = random.Random()  # when each idle thread asks again (not a secret)
        self.name = name or worker_name()
        self._threads = [
            threading.Thread(
                target=self.run_forever,
                args=(f"{self.name}:{label}{index}",),
                name=f"kassa-{label}-{index}",
                daemon=True,
            )
            for index in range(1, threads + 1)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            while thread.is_alive() and (deadline is None or time.monotonic() < deadline):
                thread.join(0.2)
        return not self.alive()

    def _idle(self) -> None:
        """Wait for this thread's next turn to ask, or until another finds something."""
        self._wake.clear()
        spread = self._turns.uniform(0.5, 1.5)
        self._wake.wait(self._poll * len(self._threads) * spread)

    def run_forever(self, owner: str) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                sent = self._send_one(owner)
            except StorageError as exc:
                backoff = min(self._max_backoff, max(self._poll, backoff * 2))
                log.warning(
                    "%s sender: database error: %s; retrying in %.1f s", self._label, exc, backoff
                )
                self._stop.wait(backoff)
                continue
            except Exception:
                log.exception("%s sender error; backing off", self._label)
                sent = False
            backoff = 0.0
            if sent:
                self._wake.set()
            elif not self._stop.is_set():
                self._idle()


class WebhookSenders(SenderThreads):
    """`concurrency` threads sending webhook deliveries (`services/webhook_delivery.py`).
    At most 2 deliveries per endpoint are in flight, so an endpoint that hangs holds at
    most 2 threads."""

    def __init__(self, kassa: Kassa, concurrency: int, *, poll_s: float = 0.5) -> None:
        super().__init__(kassa.webhook_sender.run_once, concurrency, label="webhook", poll_s=poll_s)


class MailSender(SenderThreads):
    """The buyer's e-mails (`services/emails.py`), on `threads` threads (one by default:
    a shop's mail is a few messages a minute)."""

    def __init__(self, kassa: Kassa, threads: int = 1, *, poll_s: float = 1.0) -> None:
        super().__init__(kassa.emails.send_one, threads, label="mail", poll_s=poll_s)


class WorkerPool:
    """`concurrency` worker loops on daemon threads of this process, sharing one core (and
    its connection pool). Each is a `Worker` with its own name, so the queue leases each job
    to exactly one of them; only the first does the periodic upkeep (one sweep per process
    is enough). More loops help when jobs wait on I/O (event delivery, provider calls) or,
    on PostgreSQL, on the database; on SQLite they take the write lock in turn.

    `stop()` is safe from a signal handler: it only sets each loop's stop flag; a loop
    finishes the job it is running (committing or rolling it back) before it ends."""

    def __init__(
        self,
        kassa: Kassa,
        concurrency: int = 1,
        *,
        poll_s: float = 0.5,
        handlers: dict[str, JobHandler] | None = None,
        webhooks: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        # webhook deliveries go out on threads of their own (KASSA_WEBHOOK_CONCURRENCY)
        self.webhooks = (
            WebhookSenders(kassa, kassa.settings.webhook_concurrency, poll_s=poll_s)
            if webhooks
            else None
        )
        self.workers = [
            Worker(kassa, poll_s=poll_s, handlers=handlers, upkeep=index == 0)
            for index in range(concurrency)
        ]
        self._threads = [
            threading.Thread(target=w.run_forever, name=f"kassa-worker-{index}", daemon=True)
            for index, w in enumerate(self.workers, start=1)
        ]
        # the buyer's e-mails, beside the job loops, when SMTP is configured
        self.mail = MailSender(kassa) if kassa.emails.enabled else None

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        for senders in self._senders():
            senders.start()

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        for senders in self._senders():
            senders.stop()

    def _senders(self) -> list[SenderThreads]:
        return [senders for senders in (self.webhooks, self.mail) if senders is not None]

    def alive(self) -> bool:
        senders = any(senders.alive() for senders in self._senders())
        return senders or any(thread.is_alive() for thread in self._threads)

    def join(self, timeout: float | None = None) -> bool:
        """Wait (at most `timeout` seconds in all) for every loop to end; True if they did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            # short waits, so that the main thread runs a signal handler promptly
            while thread.is_alive() and (deadline is None or time.monotonic() < deadline):
                thread.join(0.2)
        for senders in self._senders():
            senders.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self.alive()
