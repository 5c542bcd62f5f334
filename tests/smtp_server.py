"""A real SMTP server for tests: aiosmtpd on a free loopback port, in its own thread.

`replies` scripts what it answers to DATA, one reply per message in order ("451 ...",
"550 ..."), then "250 OK" for the rest (`rcpt_replies` likewise to RCPT TO);
`data_delay_s` makes it answer a message it took only that much later, as a server
whose reply is lost; `received` keeps every message it accepted, parsed, with its
envelope."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.conftest import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


@dataclass
class Recorder:
    replies: list[str] = field(default_factory=list)  # to DATA, in turn; then 250
    rcpt_replies: list[str] = field(default_factory=list)  # to RCPT TO, in turn; then 250
    data_delay_s: float = 0.0  # how long it waits before it takes a message (and replies)
    received: list[Received] = field(default_factory=list)
    data_commands: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_replies.pop(0) if self.rcpt_replies else "250 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_commands += 1
        reply = self.replies.pop(0) if self.replies else "250 OK"
        if reply.startswith("250"):
            raw = bytes(envelope.original_content or envelope.content)
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed, raw))
        if self.data_delay_s:  # it has the message; its reply comes late, or never
            await asyncio.sleep(self.data_delay_s)
        return reply


@contextmanager
def smtp_server(port: int | None = None) -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    port = port or free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()
