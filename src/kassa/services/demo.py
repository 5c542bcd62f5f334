"""The demo catalogue `kassa demo` loads: stock items, unlimited items, unique items."""

from __future__ import annotations

from kassa.config import Settings
from kassa.domain.errors import DomainError
from kassa.services.catalogue import Catalogue, NewProduct
from kassa.services.context import RequestContext

DEMO_PRODUCTS: tuple[NewProduct, ...] = (
    NewProduct("TEE-BLACK-M", "Organic cotton tee, black, M", 2500, "EUR", stock=40),
    NewProduct("TEE-WHITE-L", "Organic cotton tee, white, L", 2500, "EUR", stock=25),
    NewProduct("HOODIE-GREY", "Heavyweight hoodie, grey", 6900, "EUR", stock=12),
    NewProduct("MUG-ENAMEL", "Enamel camping mug", 1450, "EUR", stock=60),
    NewProduct("POSTER-A2", "Risograph poster, A2", 3000, "EUR", stock=5),
    NewProduct("STICKERS", "Sticker pack (10)", 450, "EUR", stock=None),
    NewProduct("EBOOK-GUIDE", "Field guide, e-book", 1200, "EUR", stock=None),
    NewProduct("GIFT-CARD-50", "Gift card, 50 EUR", 5000, "EUR", stock=None),
    NewProduct("BAG-LAST-3", "Waxed canvas bag (last three)", 12900, "EUR", stock=3),
    NewProduct("VASE-ONE-01", "Hand-thrown vase no. 1", 18500, "EUR", unique=True),
    NewProduct("PRINT-ONE-07", "Signed linocut print 7/7", 24000, "EUR", unique=True),
    NewProduct("CHAIR-VINTAGE", "Restored 1960s chair", 39000, "EUR", unique=True),
    NewProduct("TEA-SENCHA-JP", "Sencha, 100 g (ships from Kyoto)", 1800, "JPY", stock=30),
)


def load_demo_catalogue(catalogue: Catalogue, ctx: RequestContext) -> int:
    """Create the demo products that are not there yet; returns how many were created."""
    created = 0
    for product in DEMO_PRODUCTS:
        try:
            catalogue.create(ctx, product)
        except DomainError as exc:
            if exc.code != "sku_exists":
                raise
        else:
            created += 1
    return created


def mail_line(settings: Settings) -> str:
    """Where the buyers' e-mails of the demo go, without the SMTP password, or that they
    are off (`kassa demo` prints it)."""
    smtp = settings.smtp
    if smtp is None:
        return "e-mail to buyers is off (set KASSA_SMTP_URL and KASSA_MAIL_FROM to send it)"
    scheme = {"plain": "smtp", "starttls": "smtp+starttls", "tls": "smtps"}[smtp.security]
    login = f" as {smtp.username}" if smtp.username else ""
    return (
        f"e-mail to buyers goes to {scheme}://{smtp.host}:{smtp.port}{login}"
        f" from {settings.mail_from}"
    )
