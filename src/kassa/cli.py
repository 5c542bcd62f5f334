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
from kassa.domain.roles import Role
from kassa.services.context import CLI_ACTOR, RequestContext
from kassa.services.demo import load_demo_catalogue, mail_line
from kassa.services.findings import FindingView, RunReport
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
        bool, typer.Option("--fail-on-issues", help="Exit 1 if any finding is open.")
    ] = False,
    stuck_after: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Seconds after which a processing payment or a missing invoice is an issue "
            "(default KASSA_STUCK_PAYMENT_AFTER_S, 900). Another value finds what it finds "
            "but resolves none of those two checks' findings.",
        ),
    ] = None,
    window_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="How many days of provider records to compare (default 30). Another value "
            "resolves none of the provider check's findings.",
        ),
    ] = None,
    providers: Annotated[
        bool,
        typer.Option(
            "--providers/--no-providers",
            help="Compare with the providers (without: their findings stay as they were).",
        ),
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per open finding, as the API's.")
    ] = False,
    deploy: Annotated[
        bool,
        typer.Option(
            "--deploy",
            help="Check the configuration (KASSA_*) for production instead: one line per "
            "problem and exit 1, or `ok` and exit 0. Reads no database.",
        ),
    ] = False,
    skip: Annotated[
        list[str] | None,
        typer.Option(help="With --deploy: waive this rule (repeatable; see docs/deploy.md)."),
    ] = None,
) -> None:
    """Reconcile: payments, refunds, wallets, stock, document numbers, stuck payments,
    and kassa's records against the providers'. Stores the findings (a finding no longer
    found is resolved), prints every open one and ends with `open=N resolved=M`."""
    if deploy:
        _deploy_gate(skip or [])
        return
    kassa = _kassa()
    try:
        report = kassa.findings.run(
            CLI,
            stuck_after_s=stuck_after,
            provider_window_days=window_days,
            with_providers=providers,
        )
    finally:
        kassa.close()
    out = Console(highlight=False, soft_wrap=True)
    for finding in report.findings:
        if as_json:
            print(_finding_json(finding))
        else:
            out.print(_finding_line(finding, report), markup=False)
    err.print(_check_summary(report), markup=False)
    totals = f"open={report.open} resolved={report.resolved}"
    if as_json:  # stdout stays JSON lines
        err.print(totals, markup=False)
    else:
        out.print(totals, markup=False)
    if report.open and fail_on_issues:
        raise typer.Exit(1)


@app.command("export")
def export_csv(
    name: Annotated[str, typer.Argument(help="orders, payments, refunds, customers or products.")],
    from_: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (inclusive).")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (inclusive).")
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(help="Instead of --from/--to: today, yesterday, 7d, 30d, mtd or ytd."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the CSV to FILE, not stdout.")
    ] = None,
) -> None:
    """Export NAME as CSV, as GET /v1/exports/NAME.csv does: the same columns, the same
    days (in the shop's time zone) and the same audit record, with actor `cli`. Progress
    on stderr. A FILE appears only once complete. Exit 2 for an unknown export or a bad
    period, 1 when the output or the database fails."""
    import os
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeElapsedColumn as Elapsed

    partial = output.with_name(output.name + ".partial") if output else None
    kassa = _kassa()
    try:
        with (
            partial.open("wb") if partial else os.fdopen(os.dup(1), "wb") as sink,
            kassa.exports.open(CLI, name, window=window, from_=from_, to=to) as export,
        ):
            total = export.total()
            counter = MofNCompleteColumn() if total is not None else TextColumn("{task.completed}")
            columns = (TextColumn("{task.description}"), BarColumn(), counter, Elapsed())
            with Progress(*columns, console=err) as progress:
                task = progress.add_task(f"{name} rows", total=total)
                for chunk in export:
                    sink.write(chunk)
                    progress.update(task, completed=export.rows)
        if partial and output:
            partial.replace(output)
    except DomainError as exc:
        err.print(f"error: {exc.detail}", markup=False)
        raise typer.Exit(2) from exc
    except OSError as exc:  # a path that cannot be written, a closed pipe, a full disk
        if isinstance(exc, BrokenPipeError):  # nothing more can go to stdout, not even a flush
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        err.print(f"error: cannot write the export: {exc.strerror or exc}", markup=False)
        raise typer.Exit(1) from exc
    finally:
        kassa.close()
        if partial:
            partial.unlink(missing_ok=True)
    err.print(f"{export.rows} row(s) written to {output or 'stdout'}", markup=False)


def _finding_json(finding: FindingView) -> str:
    """A finding as the API answers it (`object: "check_finding"`), on one line."""
    from kassa.api.schemas import CheckFindingOut

    return CheckFindingOut.model_validate(finding).model_dump_json()


def _finding_line(finding: FindingView, report: RunReport) -> str:
    line = f"{finding.check}  {finding.subject}  {finding.detail}"
    if not report.seen_now(finding):
        line += f"  [not rechecked this run; last seen {finding.last_seen_at:%Y-%m-%d %H:%M} UTC]"
    if finding.acknowledged_at is not None:
        note = f": {finding.note}" if finding.note else ""
        line += f"  [acknowledged by {finding.acknowledged_by}{note}]"
    return line


def _check_summary(report: RunReport) -> str:
    """`N issue(s) found.` and each check's open findings, or `ok`, or `not run` for one
    that did not run to the end this time (its findings stay as they were)."""
    from kassa.services.checks import CHECK_NAMES

    ran = {check for check, _ in report.completed}
    parts = []
    for name in CHECK_NAMES:
        count = sum(f.check == name for f in report.findings)
        state = str(count or "ok") if name in ran else f"not run ({count} open)"
        parts.append(f"{name}: {state}")
    return f"{report.open} issue(s) found. " + ", ".join(parts)


def _deploy_gate(skip: list[str]) -> None:
    """`kassa check --deploy`: each rule the configuration breaks, one line each
    (`<rule>: <what to do>`) on stdout, and exit 1; else one `ok` line."""
    from kassa import deploy_gate

    try:
        found = deploy_gate.problems(Settings.from_env(), skip)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    for problem in found:
        typer.echo(str(problem))
    if found:
        err.print(f"{len(found)} deploy problem(s); see docs/deploy.md", markup=False)
        raise typer.Exit(1)
    checked = len(deploy_gate.RULES) - len(set(skip))
    waived = f" ({len(set(skip))} waived: {', '.join(sorted(set(skip)))})" if skip else ""
    typer.echo(f"ok: the configuration passes {checked} deploy rules{waived}")


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
    # the demo's webhook receivers run on this machine (the contract: the demo sets it)
    os.environ.setdefault("KASSA_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "1")
    migrations.upgrade(url)
    kassa = Kassa(Settings.from_env())
    created = load_demo_catalogue(kassa.catalogue, CLI)
    _, secret = kassa.api_keys.create(CLI, "admin", "demo admin")
    staff_email, staff_password = _demo_staff_user(kassa)
    base = f"http://{host}:{port}"
    err.print(f"demo catalogue ready ({created} new products) in {url}", markup=False)
    err.print(f"API:  {base}/v1/products   docs: {base}/docs")
    err.print(f'try:  curl -H "Authorization: Bearer {secret}" {base}/v1/products', markup=False)
    err.print(f"mail: {mail_line(kassa.settings)}", markup=False)
    err.print(
        f"dashboard: {base}/dashboard  sign in as {staff_email} with the one-time password"
        " below (you then choose your own)",
        markup=False,
    )
    typer.echo(f"admin key: {secret}")
    typer.echo(f"dashboard password: {staff_password}")
    typer.echo(f"url: {base}")
    _serve(kassa, host, port, worker=True)


DEMO_STAFF_EMAIL = "admin@demo.kassa.example"


def _demo_staff_user(kassa: Kassa) -> tuple[str, str]:
    """The demo's admin for the dashboard, with a fresh one-time password each start."""
    try:
        _, password = kassa.staff_users.create(CLI, DEMO_STAFF_EMAIL, Role.ADMIN)
    except DomainError:  # made by an earlier start: a new one-time password
        password = kassa.staff_users.reset_password(CLI, DEMO_STAFF_EMAIL)
    return DEMO_STAFF_EMAIL, password


webhooks_app = typer.Typer(
    help="Outgoing webhooks: the endpoints, and what was sent to one.",
    invoke_without_command=True,
)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.callback()
def webhooks_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many, newest first.")] = 50,
) -> None:
    """List the webhook endpoints (newest first)."""
    if ctx.invoked_subcommand is not None:
        return
    kassa = _kassa()
    try:
        table = Table(_whole("endpoint"), _whole("url"), "events", "state", "created")
        for endpoint in kassa.webhook_endpoints.list(limit=limit).data:
            state = (
                f"disabled ({endpoint.disabled_reason})"
                if endpoint.disabled
                else "failing since " + endpoint.failing_since.isoformat(timespec="seconds")
                if endpoint.failing_since
                else "enabled"
            )
            table.add_row(
                endpoint.id,
                endpoint.url,
                ", ".join(endpoint.events),
                state,
                endpoint.created_at.isoformat(timespec="seconds"),
            )
        _stdout().print(table)
    finally:
        kassa.close()


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    endpoint: Annotated[str, typer.Argument(help="The endpoint's id (we_…).")],
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many deliveries.")] = 20,
) -> None:
    """The recent deliveries to one endpoint: one row per attempt, and the next one due."""
    kassa = _kassa()
    try:
        try:
            page = kassa.webhook_endpoints.deliveries(endpoint, limit=limit)
        except DomainError as exc:
            err.print(f"error: {exc.detail}", markup=False)
            raise typer.Exit(1) from None
        table = Table(
            _whole("delivery"),
            _whole("event"),
            "type",
            "attempt",
            "status",
            "answer",
            "ms",
            "at",
            "next attempt",
            "error",
        )
        for row in page.data:
            table.add_row(
                row.id,
                row.event,
                row.type,
                str(row.attempt),
                row.status,
                str(row.response_status or ""),
                "" if row.duration_ms is None else str(row.duration_ms),
                row.created_at.isoformat(timespec="seconds"),
                row.next_attempt_at.isoformat(timespec="seconds") if row.next_attempt_at else "",
                (row.error or "")[:60],
            )
        _stdout().print(table)
    finally:
        kassa.close()


users_app = typer.Typer(help="Staff users of the dashboard.")
app.add_typer(users_app, name="users")


def _users_refused(exc: DomainError) -> typer.Exit:
    """A user's mistake (bad role or e-mail, an e-mail in use, no such user): one line."""
    err.print(f"error: {exc.detail}", markup=False)
    return typer.Exit(2)


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="Their e-mail: what they sign in with.")],
    role: Annotated[str, typer.Option(help="admin, ops or analyst.")],
) -> None:
    """Create a staff user; their one-time password is printed once, alone on the last
    line, and must be changed at their first sign-in."""
    kassa = _kassa(schema=False)  # it migrates
    try:
        migrations.upgrade(kassa.settings.database_url)
        user, password = kassa.staff_users.create(CLI, email, role)
    except DomainError as exc:
        raise _users_refused(exc) from None
    finally:
        kassa.close()
    typer.echo(f"created {user.role.value} user {user.id} ({user.email})")
    typer.echo("one-time password (shown once; it must be changed at the first sign-in):")
    typer.echo(password)


@users_app.command("list")
def users_list() -> None:
    """List the staff users (never their passwords)."""
    kassa = _kassa()
    try:
        table = Table(_whole("id"), _whole("email"), "role", "status", "last sign-in")
        for user in kassa.staff_users.list(CLI):
            status = (
                "disabled"
                if user.disabled
                else "must change password"
                if user.must_change_password
                else "active"
            )
            last = user.last_sign_in_at
            table.add_row(
                user.id,
                user.email,
                user.role.value,
                status,
                last.isoformat(timespec="seconds") if last else "never",
            )
        _stdout().print(table)
    finally:
        kassa.close()


@users_app.command("disable")
def users_disable(
    user: Annotated[str, typer.Argument(help="The user's e-mail or id (usr_…).")],
) -> None:
    """Disable a staff user: they cannot sign in, and their sessions end now."""
    kassa = _kassa()
    try:
        view = kassa.staff_users.disable(CLI, user)
    except DomainError as exc:
        raise _users_refused(exc) from None
    finally:
        kassa.close()
    err.print(f"disabled {view.id} ({view.email}); their sessions have ended", markup=False)


@users_app.command("reset-password")
def users_reset_password(
    user: Annotated[str, typer.Argument(help="The user's e-mail or id (usr_…).")],
) -> None:
    """Give a staff user a new one-time password (printed once, alone on the last line);
    their sessions end and they must change it at their next sign-in."""
    kassa = _kassa()
    try:
        view = kassa.staff_users.get(CLI, user)
        password = kassa.staff_users.reset_password(CLI, view.id)
    except DomainError as exc:
        raise _users_refused(exc) from None
    finally:
        kassa.close()
    typer.echo(f"reset the password of {view.id} ({view.email}); their sessions have ended")
    typer.echo("one-time password (shown once; it must be changed at the next sign-in):")
    typer.echo(password)


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
