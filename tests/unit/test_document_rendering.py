"""Invoice and credit note rendering: pure tests, no database.

HTML is checked as text; PDFs are parsed back with pypdf and their extracted text is
searched, so the checks hold whatever the layout.
"""

from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fontTools.ttLib import TTFont
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from kassa.documents import (
    Document,
    DocumentLine,
    Party,
    TaxLine,
    pdf_safe_text,
    render,
    render_html,
    render_pdf,
)

DEJAVU_CMAP = frozenset(TTFont(render.FONT_DIR / "DejaVuSans-Bold.ttf").getBestCmap())
ISSUED_AT = datetime(2026, 3, 5, 14, 30, tzinfo=UTC)
SELLER = Party(
    "Kassa Shop GmbH",
    ("Hauptstraße 1", "10115 Berlin", "Germany"),
    tax_id="DE123456789",
    email="billing@kassa.example",
)
BUYER = Party("Jürgen Ölmann", ("Beispielweg 7", "80331 München"), email="j@example.com")
DESCRIPTIONS = ("Espresso machine", "Coffee beans 1 kg")


def invoice(
    total: int = 123456,
    currency: str = "EUR",
    locale: str = "en_US",
    *,
    kind: str = "invoice",
    number: str = "INV-2026-000001",
    reference: str | None = "Order K-000042",
) -> Document:
    """Two lines summing to `total`: 2 x (total // 4) and 1 x the rest; 19 % VAT included."""
    unit = total // 4
    lines = (
        DocumentLine(DESCRIPTIONS[0], 2, unit, 2 * unit),
        DocumentLine(DESCRIPTIONS[1], 1, total - 2 * unit, total - 2 * unit),
    )
    return Document(
        kind=kind,  # type: ignore[arg-type]
        number=number,
        issued_at=ISSUED_AT,
        currency=currency,
        seller=SELLER,
        buyer=BUYER,
        lines=lines,
        subtotal=total,
        taxes=(TaxLine("VAT", 1900, total * 19 // 119),),
        total=total,
        reference=reference,
        notes="Thank you for your order.\nPayable within 14 days.",
        locale=locale,
    )


def credit_note(total: int = 123456, locale: str = "en_US") -> Document:
    return invoice(
        total,
        locale=locale,
        kind="credit_note",
        number="CN-2026-000001",
        reference="Refund of invoice INV-2026-000001",
    )


def pdf_text(data: bytes) -> str:
    """All extracted text, with every run of whitespace (no-break spaces too) as one space."""
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return re.sub(r"\s+", " ", text)


def spaced(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# --------------------------------------------------------------------------- HTML


def test_html_is_a_complete_self_contained_page() -> None:
    html = render_html(invoice())
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="en-US">' in html
    assert "<title>Invoice INV-2026-000001</title>" in html
    assert "<style>" in html
    assert html.rstrip().endswith("</html>")
    for external in ("http://", "https://", "<link", "<script", "src=", "url("):
        assert external not in html


def test_html_in_en_us_holds_number_parties_lines_taxes_and_totals() -> None:
    html = render_html(invoice())
    assert "Invoice INV-2026-000001" in html
    assert "March 5, 2026" in html
    assert 'datetime="2026-03-05"' in html
    assert "Order K-000042" in html
    for text in ("Kassa Shop GmbH", "Hauptstraße 1", "Tax ID: DE123456789", "Jürgen Ölmann"):
        assert text in html
    for description in DESCRIPTIONS:
        assert description in html
    # 2 x €308.64 = €617.28, 1 x €617.28; total €1,234.56 of which 19 % VAT €197.11
    assert "€308.64" in html
    assert "€617.28" in html
    assert "€1,234.56" in html
    assert "incl. VAT 19%" in html
    assert "€197.11" in html
    assert "Thank you for your order." in html


def test_html_in_de_de_formats_amounts_dates_and_rates_the_german_way() -> None:
    html = render_html(invoice(locale="de_DE"))
    assert '<html lang="de-DE">' in html
    assert "5. März 2026" in html
    assert "1.234,56\u00a0€" in html
    assert "308,64\u00a0€" in html
    assert "incl. VAT 19\u00a0%" in html
    assert "197,11\u00a0€" in html
    assert "€1,234.56" not in html


def test_html_shows_yen_without_decimals() -> None:
    html = render_html(invoice(123456, "JPY"))
    assert "¥123,456" in html
    assert "¥30,864" in html
    assert "123,456.00" not in html


def test_html_shows_bahraini_dinar_with_three_decimals() -> None:
    assert "BHD1,234.567" in render_html(invoice(1234567, "BHD"))
    assert "1.234,567\u00a0BHD" in render_html(invoice(1234567, "BHD", "de_DE"))


def test_fractional_tax_rates_keep_their_decimals() -> None:
    doc = replace(invoice(), taxes=(TaxLine("VAT", 550, 6434),))
    assert "incl. VAT 5.5%" in render_html(doc)
    assert "incl. VAT 5,5\u00a0%" in render_html(replace(doc, locale="de_DE"))


def test_credit_note_has_its_title_reference_and_positive_amounts() -> None:
    html = render_html(credit_note())
    assert "<title>Credit note CN-2026-000001</title>" in html
    assert "Refund of invoice INV-2026-000001" in html
    assert "Credited to" in html
    assert "Total credited" in html
    assert "€1,234.56" in html
    assert "-€" not in html
    assert "Invoice " not in html


def test_document_without_reference_or_notes_omits_them() -> None:
    html = render_html(replace(invoice(), reference=None, notes=None))
    assert "Reference" not in html
    assert "Notes" not in html


def test_html_escapes_everything_customers_provide() -> None:
    attack = '<script>alert("x")</script>'
    doc = replace(
        invoice(),
        lines=(DocumentLine(f"Mug {attack}", 1, 123456, 123456),),
        buyer=Party(f"Eve {attack}", (f"<img src=x onerror=alert(1)> & {attack}",)),
        reference=attack,
        notes=attack,
    )
    html = render_html(doc)
    assert "<script" not in html
    assert "<img" not in html
    assert "Mug &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;script&gt;" in html


# --------------------------------------------------------------------------- PDF


def test_pdf_is_a4_and_holds_number_every_line_and_the_total() -> None:
    data = render_pdf(invoice())
    assert data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4 in pt
    text = pdf_text(data)
    assert "Invoice INV-2026-000001" in text
    for description in DESCRIPTIONS:
        assert description in text
    for amount in ("€308.64", "€617.28", "€1,234.56", "€197.11"):
        assert amount in text
    for other in ("March 5, 2026", "Order K-000042", "Jürgen Ölmann", "incl. VAT 19%"):
        assert other in text


def test_pdf_in_de_de_uses_german_formats() -> None:
    text = pdf_text(render_pdf(invoice(locale="de_DE")))
    assert "1.234,56 €" in text
    assert "5. März 2026" in text
    assert "incl. VAT 19 %" in text


@pytest.mark.parametrize(
    ("total", "currency", "formatted"),
    [(123456, "JPY", "¥123,456"), (1234567, "BHD", "BHD1,234.567")],
)
def test_pdf_amounts_use_the_currency_exponent(total: int, currency: str, formatted: str) -> None:
    assert formatted in pdf_text(render_pdf(invoice(total, currency)))


def test_pdf_credit_note() -> None:
    text = pdf_text(render_pdf(credit_note()))
    assert "Credit note CN-2026-000001" in text
    assert "Refund of invoice INV-2026-000001" in text
    assert "Total credited €1,234.56" in text


def test_pdf_metadata_and_bytes_are_deterministic() -> None:
    doc = invoice()
    first = render_pdf(doc)
    assert render_pdf(doc) == first
    assert render_pdf(replace(doc, issued_at=ISSUED_AT + timedelta(days=1))) != first
    metadata = PdfReader(io.BytesIO(first)).metadata
    assert metadata is not None
    assert metadata.title == "Invoice INV-2026-000001"
    assert metadata.creation_date == ISSUED_AT


def test_long_documents_flow_onto_more_pages() -> None:
    descriptions = [f"Article {i:03d} " + "with a longer description " * (i % 5) for i in range(90)]
    lines = tuple(DocumentLine(d.strip(), 1, 1000, 1000) for d in descriptions)
    doc = replace(invoice(), lines=lines, subtotal=90000, total=90000, taxes=())
    data = render_pdf(doc)
    assert len(PdfReader(io.BytesIO(data)).pages) > 1
    text = pdf_text(data)
    for i in range(90):
        assert f"Article {i:03d}" in text
    assert "€900.00" in text
    assert "Page 1/" in text


def test_a_line_taller_than_a_page_still_renders() -> None:
    huge = "Lorem ipsum dolor sit amet " * 600 + "Supercalifragilistic" * 40
    doc = replace(invoice(), lines=(DocumentLine(huge, 1, 123456, 123456),))
    data = render_pdf(doc)
    assert len(PdfReader(io.BytesIO(data)).pages) > 2
    assert "€1,234.56" in pdf_text(data)


def test_customer_text_cannot_inject_the_page_count() -> None:
    doc = replace(invoice(), lines=(DocumentLine("Sticker {nb} pack", 1, 123456, 123456),))
    text = pdf_text(render_pdf(doc))
    assert "Sticker {nb} pack" in text
    assert "Page 1/1" in text


# --------------------------------------------------------------------------- any Unicode

AWKWARD_NAMES = [
    "Иван Петров",  # Cyrillic
    "山田 太郎 株式会社",  # CJK
    "Kim 김민준",  # Hangul
    "שלום עליכם",  # Hebrew, right to left
    "محمد ١٢٣",  # Arabic with Arabic-Indic digits
    "Coffee ☕️ & 🎉 👨‍👩‍👧 👍🏽",  # emoji, variation selector, ZWJ, skin tone
    "Zoë Łukasz Őrs",  # Latin outside cp1252
    "tab\tnewline\ncarriage\rnull\x00bell\x07 c1\x85",  # control characters
    "e\u0301 combining",  # combining acute accent
    "lone \ud800 surrogate",
]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_any_unicode_renders_in_html_and_pdf_without_raising(name: str) -> None:
    doc = replace(
        invoice(),
        seller=Party(name, (name,), tax_id=name, email=name),
        buyer=Party(name),
        lines=(DocumentLine(name, 1, 123456, 123456),),
        taxes=(TaxLine(name, 1900, 19711),),
        reference=name,
        notes=name,
        number=f"INV-{name}",
    )
    assert name.split()[0] in render_html(doc)
    data = render_pdf(doc)
    text = pdf_text(data)
    assert "€1,234.56" in text
    assert "INV-" in text


def test_pdf_keeps_latin_greek_and_cyrillic_text() -> None:
    doc = replace(invoice(), buyer=Party("Иван Zoë Ōno Σωκράτης"))
    text = pdf_text(render_pdf(doc))
    assert "Иван Zoë Ōno Σωκράτης" in text  # the bundled DejaVu Sans prints them all


def test_pdf_spells_foreign_symbols_and_dates_in_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "KNOWN_FALLBACK_FONTS", ())  # no CJK font, wherever we run
    monkeypatch.delenv("KASSA_DOCUMENT_FALLBACK_FONTS", raising=False)
    rupees = pdf_text(render_pdf(invoice(123456, "INR", "en_IN")))
    assert "₹1,234.56" in rupees  # DejaVu Sans has the rupee sign
    assert "₹1,234.56" in render_html(invoice(123456, "INR", "en_IN"))
    japanese = pdf_text(render_pdf(invoice(123456, "JPY", "ja_JP")))
    assert "2026-03-05" in japanese
    assert "JPY123,456" in japanese


def test_pdf_safe_text_folds_replaces_and_drops() -> None:
    kept = "Café € \u2013 “ok” … Őrs Дом Κύπρος ₹"  # all in DejaVu Sans
    assert pdf_safe_text(kept) == kept
    assert pdf_safe_text("\uff21\uff22 \uffe5") == "AB ¥"  # fullwidth A B yen fold
    assert pdf_safe_text("e\u0301") == "\u00e9"  # NFC: one letter, not a loose accent
    assert pdf_safe_text("山田") == "??"  # no CJK fallback font given
    assert pdf_safe_text("👍\ufe0f") == "?"
    assert pdf_safe_text("a\u200db") == "ab"
    assert pdf_safe_text("1\u202f234") == "1\u00a0234"
    assert pdf_safe_text("१२३") == "123"  # digits of a script no font prints
    assert pdf_safe_text("a\nb\tc\x00d") == "a b c d"
    assert pdf_safe_text("a\r\nb", multiline=True) == "a\nb"


UNICODE_TEXT = st.text(st.characters(exclude_categories=()), min_size=1, max_size=200)


@given(UNICODE_TEXT)
def test_pdf_safe_text_always_fits_the_bundled_font(text: str) -> None:
    safe = pdf_safe_text(text, multiline=True)
    assert all(ord(char) in DEJAVU_CMAP for char in safe.replace("\n", ""))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=UNICODE_TEXT, description=UNICODE_TEXT, notes=UNICODE_TEXT)
def test_rendering_never_raises_for_any_text(name: str, description: str, notes: str) -> None:
    doc = replace(
        invoice(),
        seller=Party(f"S{name}", (name,)),
        buyer=Party(f"B{name}", email=f"E{name}"),  # optional text, when given, is not blank
        lines=(DocumentLine(f"D{description}", 1, 123456, 123456),),
        reference=f"R{notes}",
        notes=notes,
    )
    render_html(doc)
    # Without host fonts: embedding a CJK fallback font costs seconds per example, and
    # tests/unit/test_document_fonts.py covers that path.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(render, "KNOWN_FALLBACK_FONTS", ())
        patch.delenv("KASSA_DOCUMENT_FALLBACK_FONTS", raising=False)
        assert "INV-2026-000001" in pdf_text(render_pdf(doc))


# --------------------------------------------------------------------------- validation


def test_validation_rejects_a_subtotal_that_is_not_the_sum_of_the_lines() -> None:
    with pytest.raises(ValueError, match="sum of the lines"):
        replace(invoice(), subtotal=123455, total=123455)


def test_validation_rejects_a_total_other_than_the_gross_subtotal() -> None:
    with pytest.raises(ValueError, match="prices include their taxes"):
        replace(invoice(), total=123456 + 19711)


def test_validation_rejects_negative_totals_even_for_credit_notes() -> None:
    doc = credit_note()
    lines = tuple(replace(line, amount=-line.amount) for line in doc.lines)
    with pytest.raises(ValueError, match="positive"):
        replace(doc, lines=lines, subtotal=-123456, total=-123456)


@pytest.mark.parametrize("amount", [True, 1.5, "100", None])
def test_validation_wants_int_amounts(amount: object) -> None:
    with pytest.raises(TypeError):
        DocumentLine("Mug", 1, 100, amount)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        replace(invoice(), subtotal=amount)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TaxLine("VAT", 1900, amount)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "receipt"}, "kind"),
        ({"currency": "EURO"}, "ISO 4217"),
        ({"locale": "xx_YY"}, "locale"),
        ({"issued_at": datetime(2026, 3, 5)}, "timezone"),
        ({"number": "  "}, "number"),
        ({"lines": (), "subtotal": 0, "total": 0, "taxes": ()}, "at least one line"),
        ({"taxes": (TaxLine("VAT", 1900, 200000),)}, "exceed"),
    ],
)
def test_validation_rejects_malformed_documents(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(invoice(), **changes)  # type: ignore[arg-type]


def test_line_quantity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="quantity"):
        DocumentLine("Mug", 0, 100, 0)


def test_issue_time_is_normalised_to_utc_and_currency_to_upper_case() -> None:
    berlin = timezone(timedelta(hours=1))
    doc = replace(invoice(currency="eur"), issued_at=datetime(2026, 3, 6, 0, 30, tzinfo=berlin))
    assert doc.issued_at == datetime(2026, 3, 5, 23, 30, tzinfo=UTC)
    assert doc.issued_at.tzinfo is UTC
    assert doc.currency == "EUR"
    assert "March 5, 2026" in render_html(doc)
