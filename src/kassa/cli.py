"""The `kassa` command line: serve, worker, jobs, migrate, keys, check, demo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from kassa import logs
from kassa.bootstrap import Kassa
from kassa.config import ConfigError, Settings
from kassa.domain.errors import DomainError
from kassa.services.context import CLI_ACTOR, RequestContext
from kassa.services.demo import load_demo_catalogue
from kassa.storage import migrate as migrations
from kassa.storage.errors import storage_error

app = typer.Typer(help="kassa: orders, payments and refunds for Stripe-first shops.")
keys_app = typer.Typer(help="Manage API keys.")
app.add_typer(keys_app, name="keys")
err = Console(stderr=True, soft_wrap=True)  # messages are never broken mid-line

CLI = RequestContext.system(CLI_ACTOR)
JOB_STATES = ("queued", "running", "done", "dead")


def _stdout() -> Console:
    """stdout for tables: a terminal's own width; into a pipe or a file, wide enough that no
    cell (an id to paste into the next command) is ever cut or wrapped."""
    out = Console(highlight=False)
    return out if out.is_terminal else Console(highlight=False, width=4096)


def _whole(header: str) -> Column:
    """A column whose values (ids, kinds) are never cut short with an ellipsis."""
    return Column(header, no_wrap=True, overflow="fold")


def _log_to_stderr(level: str = "info", log_format: str = "text") -> None:
    """INFO lines (one per background job) on stderr, unless logging is configured already;
    `log_format` json: one JSON object per line (KASSA_LOG_FORMAT, `kassa.logs`)."""
    logs.configure(log_format, level)


def _kassa(settings: Settings | None = None, *, schema: bool = True) -> Kassa:
    """The core on KASSA_DATABASE_URL; unless `schema=False`, refuses (SchemaMissing) a
    database that is not migrated, before any command works on it."""
    kassa = Kassa(settings or Settings.from_env())
    if schema:
        try:
            kassa.db.require_schema()
        except BaseException:
            kassa.close()
            raise
    return kassa


def _sandbox_webhook_url(kassa: Kassa, host: str, port: int) -> str:
    """Where the sandbox posts its signed events: KASSA_MOCK_WEBHOOK_URL, else this very
    server. Put in the environment too, which every API process `serve` starts inherits."""
    if kassa.mock_webhook_url is None:
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        kassa.mock_webhook_url = f"http://{local}:{port}/v1/webhooks/mock"
    os.environ["KASSA_MOCK_WEBHOOK_URL"] = kassa.mock_webhook_url
    return kassa.mock_webhook_url


def _serve(
    kassa: Kassa,
    host: str,
    port: int,
    worker: bool,
    *,
    workers: int = 1,
    log_level: str = "info",
) -> None:
    """Serve the API: in this process with `kassa` (workers=1), or in `workers` processes
    under uvicorn's supervisor, each building its own core from the environment. The
    embedded background worker runs once either way, here (in the supervisor), never in
    the API processes; SIGINT or SIGTERM stops the API processes, then it."""
    from kassa import server
    from kassa.worker import WorkerPool

    _sandbox_webhook_url(kassa, host, port)
    log_format = kassa.settings.log_format
    embedded = WorkerPool(kassa) if worker else None
    if embedded:
        _log_to_stderr(log_level, log_format)
        embedded.start()
    try:
        if workers == 1:
            from kassa.api.app import create_app

            app = create_app(kassa)
            server.serve(app, host=host, port=port, log_level=log_level, log_format=log_format)
        else:
            server.serve_processes(
                host=host, port=port, workers=workers, log_level=log_level, log_format=log_format
            )
    finally:
        if embedded:
            embedded.stop()
            embedded.join(timeout=10)
        kassa.close()


@app.command()
def worker(
    poll: Annotated[float, typer.Option(help="Seconds between polls when idle.")] = 0.5,
    concurrency: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker loops in this process (threads), sharing the queue: more help when "
            "jobs wait on the network or on PostgreSQL.",
        ),
    ] = 1,
) -> None:
    """Run a standalone background worker (any number may run against PostgreSQL).

    It delivers the sandbox's events too: with `kassa serve --no-worker`, set
    KASSA_MOCK_WEBHOOK_URL to the server's /v1/webhooks/mock."""
    import signal

    from kassa.worker import WorkerPool

    settings = Settings.from_env()
    _log_to_stderr(log_format=settings.log_format)
    kassa = _kassa(settings)
    pool = WorkerPool(kassa, concurrency, poll_s=poll)
    signal.signal(signal.SIGTERM, lambda *_: pool.stop())
    signal.signal(signal.SIGINT, lambda *_: pool.stop())
    names = ", ".join(w.name for w in pool.workers)
    if settings.log_format == "text":  # in json, each loop's "started" line says it
        err.print(f"worker {names} running; Ctrl-C to stop", markup=False)
    try:
        pool.start()
        pool.join()  # until a signal stops every loop and each has finished its batch
    finally:
        kassa.close()


jobs_app = typer.Typer(help="Inspect and retry background jobs.", invoke_without_command=True)
app.add_typer(jobs_app, name="jobs")


@jobs_app.callback()
def jobs_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="queued, running, done or dead.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
) -> None:
    """List background jobs (newest first) and the count in each state."""
    if ctx.invoked_subcommand is not None:
        return
    kassa = _kassa()
    try:
        table = Table(_whole("job"), _whole("kind"), "state", "attempts", "run after", "last error")
        for job in kassa.jobs.list(state, limit):
            table.add_row(
                str(job.pk),
                job.kind,
                job.state,
                f"{job.attempts}/{job.max_attempts}",
                job.run_after.isoformat(timespec="seconds"),
                (job.last_error or "")[:60],
            )
        out = _stdout()
        out.print(table)
        counts = kassa.jobs.counts()
        states = [*JOB_STATES, *sorted(set(counts) - set(JOB_STATES))]
        out.print(" ".join(f"{s}={counts.get(s, 0)}" for s in states), markup=False)
    finally:
        kassa.close()


@jobs_app.command("retry")
def jobs_retry(
    job: Annotated[
        int | None, typer.Argument(help="A dead job's number; all dead if omitted.")
    ] = None,
) -> None:
    """Put dead-lettered jobs back in the queue."""
    kassa = _kassa()
    try:
        count = kassa.jobs.retry_dead(job)
    finally:
        kassa.close()
    err.print(f"{count} job(s) queued again")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="API processes sharing the port (uvicorn's supervisor restarts one that "
            "dies). The embedded worker still runs once, in the supervisor.",
        ),
    ] = 1,
    worker: Annotated[
        bool,
        typer.Option(help="Run the embedded background worker (else run `kassa worker`)."),
    ] = True,
    migrate: Annotated[bool, typer.Option(help="Apply migrations before serving.")] = True,
    log_level: Annotated[
        str, typer.Option(help="debug, info (a line per request and per job), warning, error.")
    ] = "info",
) -> None:
    """Serve the HTTP API (with an embedded worker unless --no-worker)."""
    settings = Settings.from_env()
    if migrate:
        migrations.upgrade(settings.database_url)  # once, before any API process starts
    kassa = _kassa(settings)  # --no-migrate: refuses an unmigrated database
    _serve(kassa, host, port, worker, workers=workers, log_level=log_level)


@app.command()
def migrate(
    check: Annotated[
        bool, typer.Option(help="Also fail if the models hold anything the migrations do not.")
    ] = False,
) -> None:
    """Bring the database schema up to date."""
    url = Settings.from_env().database_url
    if check:
        migrations.check(url)
    else:
        migrations.upgrade(url)
    err.print(f"database at head: {url.split('@')[-1]}")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, ops, analyst or storefront.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
) -> None:
    """Create an API key; its secret is printed once, alone on the last line."""
    kassa = _kassa(schema=False)  # it migrates
    try:
        migrations.upgrade(kassa.settings.database_url)
        key, secret = kassa.api_keys.create(CLI, role, name)
    except DomainError as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(2) from exc
    finally:
        kassa.close()
    err.print(f"created {key.role.value} key {key.id} ({key.name}); store the secret now:")
    typer.echo(secret)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never their secrets)."""
    kassa = _kassa()
    try:
        table = Table(_whole("id"), "name", "role", "secret", "created", "revoked")
        for key in kassa.api_keys.list():
            table.add_row(
                key.id,
                key.name,
                key.role.value,
                key.secret_prefix + "…",
                key.created_at.isoformat(),
                key.revoked_at.isoformat() if key.revoked_at else "",
            )
        _stdout().print(table)
    finally:
        kassa.close()


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key; requests with it get 401 from then on."""
    kassa = _kassa()
    try:
        kassa.api_keys.revoke(CLI, key_id)
    except DomainError as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(2) from exc
    finally:
        kassa.close()
    err.print(f"revoked {key_id}")


@app.command()
def check(
    fail_on_issues: Annotated[
        bool, typer.Option("--fail-on-issues", help="Exit 1 if anything is inconsistent.")
    ] = False,
    stuck_after: Annotated[
        int | None,
        typer.Option(
            help="Seconds after which a processing payment or a missing invoice is an issue "
            "(default KASSA_STUCK_PAYMENT_AFTER_S, 900)."
        ),
    ] = None,
    window_days: Annotated[
        int, typer.Option(help="How many days of provider records to compare.")
    ] = 30,
    providers: Annotated[
        bool, typer.Option("--providers/--no-providers", help="Compare with the providers.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per issue.")] = False,
) -> None:
    """Reconcile: payments, refunds, wallets, stock, document numbers, stuck payments,
    and kassa's records against the providers'. Prints each inconsistency."""
    import json

    from kassa.services.checks import CHECK_NAMES

    kassa = _kassa()
    try:
        findings = kassa.reconciliation.run(
            stuck_after_s=stuck_after, provider_window_days=window_days, with_providers=providers
        )
    finally:
        kassa.close()
    out = Console(highlight=False, soft_wrap=True)
    for finding in findings:
        if as_json:
            print(
                json.dumps(
                    {"check": finding.check, "subject": finding.subject, "detail": finding.detail}
                )
            )
        else:
            out.print(f"{finding.check}  {finding.subject}  {finding.detail}", markup=False)
    counts = {name: sum(f.check == name for f in findings) for name in CHECK_NAMES}
    ran = [n for n in CHECK_NAMES if providers or n != "provider_records"]
    summary = ", ".join(f"{n}: {counts[n] or 'ok'}" for n in ran)
    err.print(f"{len(findings)} issue(s) found. {summary}", markup=False)
    if findings and fail_on_issues:
        raise typer.Exit(1)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database: Annotated[Path, typer.Option(help="SQLite file for the demo.")] = Path(
        "kassa-demo.db"
    ),
) -> None:
    """Create a SQLite demo database with a catalogue, print an admin key, and serve."""
    url = os.environ.get("KASSA_DATABASE_URL") or f"sqlite:///{database.resolve()}"
    os.environ["KASSA_DATABASE_URL"] = url
    migrations.upgrade(url)
    kassa = Kassa(Settings.from_env())
    created = load_demo_catalogue(kassa.catalogue, CLI)
    _, secret = kassa.api_keys.create(CLI, "admin", "demo admin")
    base = f"http://{host}:{port}"
    err.print(f"demo catalogue ready ({created} new products) in {url}", markup=False)
    err.print(f"API:  {base}/v1/products   docs: {base}/docs")
    err.print(f'try:  curl -H "Authorization: Bearer {secret}" {base}/v1/products', markup=False)
    typer.echo(f"admin key: {secret}")
    typer.echo(f"url: {base}")
    _serve(kassa, host, port, worker=True)


def main() -> None:
    """Every command: a database kassa cannot use (unreachable, not migrated, a bad
    KASSA_DATABASE_URL) or a `KASSA_*` value kassa cannot use is one line on stderr saying
    what to do, and exit status 1."""
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    except Exception as exc:
        problem = storage_error(exc)
        if problem is None:
            raise
        typer.echo(f"error: {problem}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
