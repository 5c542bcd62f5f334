"""Make the screenshots in this folder from a real, offline kassa.

    docs-offline.png     /docs (Swagger UI) served by `kassa demo`, in headless Chromium
    invoice-unicode.png  page 1 of the PDF invoice of an order paid through the API, with
                         Greek and Cyrillic product titles (pdftoppm -png -r 80)

Needs, besides the project's venv (`make .venv/.installed`):

    apt-get install -y chromium poppler-utils       # /usr/bin/chromium, pdftoppm
                                                    # (playwright, a dev dependency, drives
                                                    # Debian's Chromium, downloads no browser)

Run from the repository root:

    .venv/bin/python docs/screenshots/make_screenshots.py [--only docs|invoice]

The demo server runs on a temporary SQLite database and a free port on 127.0.0.1, with
`KASSA_PROVIDERS`/`KASSA_DEFAULT_PROVIDER` left at their defaults (the mock provider).
Chromium is started with background networking off; every request it makes to another
host is aborted and reported, so the docs screenshot also proves the page works offline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KASSA = Path(sys.executable).with_name("kassa")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
UNICODE_PRODUCTS = [
    ("VASE-GR", "Κεραμικό βάζο", 4900),
    ("VASE-RU", "Керамическая ваза", 5900),
    ("MUG-GR", "Κούπα «Ακρόπολη»", 1450),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def demo_server(workdir: Path) -> Iterator[tuple[str, str]]:
    """`kassa demo` on a fresh SQLite file; yields (base url, admin key)."""
    port = free_port()
    env = {**os.environ, "KASSA_DATABASE_URL": f"sqlite:///{workdir / 'kassa.db'}"}
    env.pop("KASSA_STRIPE_SECRET_KEY", None)
    subprocess.run([str(KASSA), "migrate"], env=env, check=True, cwd=workdir)
    proc = subprocess.Popen(
        [str(KASSA), "demo", "--port", str(port), "--database", str(workdir / "kassa.db")],
        env=env,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        key = ""
        for line in proc.stdout:
            if line.startswith("admin key:"):
                key = line.split(":", 1)[1].strip()
                break
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("kassa demo did not come up")
            time.sleep(0.3)
        yield base, key
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def docs_screenshot(base: str, out: Path) -> None:
    from playwright.sync_api import Route, sync_playwright

    foreign: list[str] = []

    def guard(route: Route) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.route("**/*", guard)
        page.goto(base + "/docs")
        page.wait_for_selector(".opblock", timeout=30_000)  # the operations list rendered
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out))
        operations = page.locator(".opblock").count()
        browser.close()
    if foreign:
        raise RuntimeError(f"/docs tried to load from other hosts: {foreign}")
    print(f"{out.relative_to(ROOT)}: Swagger UI with {operations} operations, no other host")


def invoice_screenshot(base: str, key: str, out: Path) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=auth, timeout=30) as api:
        for sku, title, amount in UNICODE_PRODUCTS:
            created = api.post(
                "/v1/products",
                json={"sku": sku, "title": title, "unit_amount": amount, "currency": "EUR"},
            )
            assert created.status_code in (200, 201), created.text
        order = api.post(
            "/v1/orders",
            json={
                "email": "eleni@example.com",
                "currency": "EUR",
                "lines": [
                    {"sku": "VASE-GR", "quantity": 1},
                    {"sku": "VASE-RU", "quantity": 2},
                    {"sku": "MUG-GR", "quantity": 4},
                ],
            },
        )
        assert order.status_code in (200, 201), order.text
        order_id = order.json()["id"]
        paid = api.post(f"/v1/orders/{order_id}/payments", json={"payment_method": "pm_card_visa"})
        assert paid.json().get("status") == "succeeded", paid.text
        deadline = time.monotonic() + 60
        while (invoice := api.get(f"/v1/orders/{order_id}/invoice")).status_code != 200:
            if time.monotonic() > deadline:  # the demo's worker issues it in the background
                raise RuntimeError(f"no invoice: {invoice.text}")
            time.sleep(0.5)
        pdf = api.get(invoice.json()["pdf_url"])
        assert pdf.status_code == 200, pdf.text
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "invoice.pdf"
        path.write_bytes(pdf.content)
        prefix = Path(tmp) / "page"
        subprocess.run(
            ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", str(path), str(prefix)],
            check=True,
        )
        (page,) = Path(tmp).glob("page*.png")
        shutil.copyfile(page, out)
        text = subprocess.run(
            ["pdftotext", str(path), "-"], capture_output=True, text=True, check=True
        ).stdout
    missing = [title for _, title, _ in UNICODE_PRODUCTS if title not in text]
    if missing:
        raise RuntimeError(f"the PDF's text lacks {missing}")
    print(f"{out.relative_to(ROOT)}: invoice {invoice.json()['number']}, page 1 at 80 dpi")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("docs", "invoice"))
    args = parser.parse_args()
    for tool in (CHROMIUM, shutil.which("pdftoppm")):
        if not tool or not Path(tool).exists():
            sys.exit("needs Debian's chromium and poppler-utils (see this script's docstring)")
    with tempfile.TemporaryDirectory() as tmp, demo_server(Path(tmp)) as (base, key):
        if args.only in (None, "docs"):
            docs_screenshot(base, HERE / "docs-offline.png")
        if args.only in (None, "invoice"):
            invoice_screenshot(base, key, HERE / "invoice-unicode.png")


if __name__ == "__main__":
    main()
