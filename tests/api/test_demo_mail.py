"""`kassa demo` says where the buyers' e-mails go, or that they are off."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.api.test_cli_output import KASSA
from tests.conftest import free_port


def mail_line(tmp_path: Path, **env: str) -> str:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    environ.update(env)
    proc = subprocess.Popen(
        [*KASSA, "demo", "--port", str(port)],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if line.startswith("mail: "):
                return line.strip()
            if not line and proc.poll() is not None:
                break
        raise AssertionError("the demo printed no mail: line")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "mail: e-mail to buyers is off (set KASSA_SMTP_URL and KASSA_MAIL_FROM to send it)"),
        (
            {
                "KASSA_SMTP_URL": "smtp://demo:s3cret@127.0.0.1:1025",
                "KASSA_MAIL_FROM": "shop@kassa.test",
            },
            "mail: e-mail to buyers goes to smtp://127.0.0.1:1025 as demo from shop@kassa.test",
        ),
    ],
)
def test_the_demo_says_where_mail_goes_never_the_password(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    line = mail_line(tmp_path, **env)
    assert line == expected and "s3cret" not in line
