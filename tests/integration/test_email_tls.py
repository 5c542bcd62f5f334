"""E-mail over TLS and with a login, as KASSA_SMTP_URL says: STARTTLS on the submission
port with AUTH, and TLS from the first byte (smtps). A real aiosmtpd with a certificate
made for the test; a wrong password leaves the message queued for later."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from fastapi.testclient import TestClient

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.mail.smtp import SmtpTransport
from tests.conftest import FakeClock, free_port, make_keys
from tests.integration.test_emails import (
    CONFIRMATION,
    carrying,
    order_paid,
    paid_order,
    rows,
    send_all,
    stock,
    the,
)
from tests.smtp_server import Recorder

# smtps: aiosmtpd cannot see that the connection is TLS from the start, and warns
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "shop@kassa.test", "p@ss:word/1"
QUOTED = "shop%40kassa.test:p%40ss%3Aword%2F1"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificate")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode(),
        auth_data.password.decode(),
    ) == (USER, PASSWORD)
    return AuthResult(success=ok, handled=False)  # a refusal: aiosmtpd says 535


@pytest.fixture(params=["starttls", "tls"])
def tls_server(
    request: pytest.FixtureRequest, certificate: tuple[Path, Path]
) -> Iterator[tuple[Recorder, str, Path]]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    recorder, port = Recorder(), free_port()
    if request.param == "starttls":
        controller = Controller(
            recorder,
            hostname="127.0.0.1",
            port=port,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            authenticator=authenticator,
        )
        url = f"smtp+starttls://{QUOTED}@127.0.0.1:{port}"
    else:
        controller = Controller(
            recorder,
            hostname="127.0.0.1",
            port=port,
            ssl_context=context,
            auth_required=True,
            auth_require_tls=False,  # the whole connection is TLS already
            authenticator=authenticator,
        )
        url = f"smtps://{QUOTED}@127.0.0.1:{port}"
    controller.start()
    try:
        yield recorder, url, cert
    finally:
        controller.stop()


def shop_for(database_url: str, url: str, cert: Path, clock: FakeClock) -> Kassa:
    settings = Settings(
        database_url=database_url, smtp_url=url, mail_from="shop@kassa.test", smtp_timeout_s=30
    )
    kassa = stock(Kassa(settings, clock=clock))
    transport = kassa.emails.transport
    assert isinstance(transport, SmtpTransport)
    transport.context = ssl.create_default_context(cafile=str(cert))  # trust the test's CA
    return kassa


def test_mail_goes_over_tls_with_the_login_of_the_url(
    database_url: str, tls_server: tuple[Recorder, str, Path], clock: FakeClock
) -> None:
    server, url, cert = tls_server
    kassa = shop_for(database_url, url, cert, clock)
    try:
        with TestClient(create_app(kassa)) as client:
            order = paid_order(client, make_keys(kassa))
        order_paid(kassa, order["id"])
        assert send_all(kassa) == 2  # the order's confirmation and its invoice
        for row in rows(kassa):
            assert row.status == "sent", row.last_error
        [got] = carrying(server, the(kassa, CONFIRMATION))
        assert order["number"] in got.message["Subject"] and len(server.received) == 2
    finally:
        kassa.close()


def test_a_wrong_password_keeps_the_message_for_later(
    database_url: str, tls_server: tuple[Recorder, str, Path], clock: FakeClock
) -> None:
    server, url, cert = tls_server
    kassa = shop_for(database_url, url.replace("1@", "2@"), cert, clock)
    try:
        with TestClient(create_app(kassa)) as client:
            order = paid_order(client, make_keys(kassa))
        order_paid(kassa, order["id"])
        assert send_all(kassa) == 2  # the order's confirmation and its invoice: each kept
        for row in rows(kassa):
            assert (row.status, row.attempts) == ("queued", 1)
            assert "login refused: 535" in (row.last_error or "")
            assert PASSWORD not in (row.last_error or "")
        assert server.received == []
    finally:
        kassa.close()


def test_an_untrusted_certificate_is_refused_not_ignored(
    database_url: str, tls_server: tuple[Recorder, str, Path], clock: FakeClock
) -> None:
    server, url, _ = tls_server
    settings = Settings(
        database_url=database_url, smtp_url=url, mail_from="shop@kassa.test", smtp_timeout_s=30
    )
    kassa = stock(Kassa(settings, clock=clock))  # the system's CAs only
    try:
        with TestClient(create_app(kassa)) as client:
            order = paid_order(client, make_keys(kassa))
        order_paid(kassa, order["id"])
        assert send_all(kassa) == 2  # the order's confirmation and its invoice: each refused
        for row in rows(kassa):
            assert row.status == "queued"
            assert "CERTIFICATE_VERIFY_FAILED" in (row.last_error or "")
        assert server.received == []
    finally:
        kassa.close()
