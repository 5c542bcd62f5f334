"""`kassa users`: create (the one-time password alone on the last line), list, disable,
reset-password; a user's mistake is one line on stderr and exit status 2."""

from __future__ import annotations

import pytest

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.staff_sessions import SignInRefused
from tests.api.test_cli import run_cli

CLIENT = "127.0.0.1"


def sign_in(database_url: str, email: str, password: str) -> bool:
    """Whether `password` signs `email` in (through the service, as the dashboard will)."""
    kassa = Kassa(Settings(database_url=database_url))
    try:
        kassa.staff_sessions.sign_in(email, password, CLIENT)
        return True
    except SignInRefused:
        return False
    finally:
        kassa.close()


def test_create_list_reset_and_disable(database_url: str) -> None:
    env = {"KASSA_DATABASE_URL": database_url}
    created = run_cli("users", "create", "--email", "Ada@Example.com", "--role", "ops", env=env)
    assert created.returncode == 0, created.stderr
    lines = created.stdout.strip().splitlines()
    password = lines[-1]
    assert " " not in password and len(password.replace("-", "")) == 16, created.stdout
    assert "shown once" in lines[-2] and "changed" in lines[-2], created.stdout
    assert sign_in(database_url, "ada@example.com", password)

    listed = run_cli("users", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "ada@example.com" in listed.stdout and "ops" in listed.stdout
    assert "usr_" in listed.stdout
    assert password not in listed.stdout and "$argon2" not in listed.stdout

    reset = run_cli("users", "reset-password", "ada@example.com", env=env)
    assert reset.returncode == 0, reset.stderr
    new_password = reset.stdout.strip().splitlines()[-1]
    assert new_password != password
    assert not sign_in(database_url, "ada@example.com", password)
    assert sign_in(database_url, "ada@example.com", new_password)

    user_id = next(w for w in listed.stdout.split() if w.startswith("usr_"))
    disabled = run_cli("users", "disable", user_id, env=env)
    assert disabled.returncode == 0, disabled.stderr
    assert not sign_in(database_url, "ada@example.com", new_password)
    relisted = run_cli("users", "list", env=env)
    assert "disabled" in relisted.stdout, relisted.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("create", "--email", "bob@example.com", "--role", "superuser"), "role must be one of"),
        (("create", "--email", "bob@example.com", "--role", "storefront"), "role must be one of"),
        (("create", "--email", "not-an-email", "--role", "ops"), "not an e-mail address"),
        (("create", "--email", "taken@example.com", "--role", "ops"), "exists"),
        (("disable", "nobody@example.com"), "no staff user"),
        (("reset-password", "usr_0000"), "no staff user"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(
    database_url: str, args: tuple[str, ...], says: str
) -> None:
    env = {"KASSA_DATABASE_URL": database_url}
    first = run_cli("users", "create", "--email", "taken@example.com", "--role", "admin", env=env)
    assert first.returncode == 0, first.stderr
    done = run_cli("users", *args, env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert says in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # no traceback
    assert done.stdout == ""
