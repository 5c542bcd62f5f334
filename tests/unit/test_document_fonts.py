"""PDF documents print Greek, Cyrillic (bundled DejaVu Sans) and other scripts (fallback fonts).

PDFs are parsed back with pypdf: the extracted text must hold the original strings, and the
fonts that print them must be embedded in the file.
"""

from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont
from pypdf import PdfReader

from kassa.config import Settings
from kassa.documents import DocumentLine, Party, render, render_pdf
from tests.unit.test_document_rendering import invoice, pdf_text

GREEK = "Κεραμικό βάζο"
CYRILLIC = "Керамическая ваза"
JAPANESE = "陶器の花瓶"


def unicode_invoice(*titles: str) -> bytes:
    lines = tuple(DocumentLine(title, 1, 61728, 61728) for title in titles)
    total = 61728 * len(lines)
    doc = replace(
        invoice(),
        lines=lines,
        subtotal=total,
        total=total,
        taxes=(),
        buyer=Party(f"{CYRILLIC} {GREEK}"),
    )
    return render_pdf(doc)


def embedded_fonts(data: bytes) -> dict[str, bool]:
    """BaseFont name -> whether its font program is embedded, for every font used."""
    fonts: dict[str, bool] = {}
    for page in PdfReader(io.BytesIO(data)).pages:
        for ref in page["/Resources"]["/Font"].values():
            font = ref.get_object()
            descendants = font.get("/DescendantFonts")
            described = descendants[0].get_object() if descendants else font
            descriptor = described.get("/FontDescriptor")
            descriptor = descriptor.get_object() if descriptor else {}
            fonts[str(font["/BaseFont"])] = any(
                key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3")
            )
    return fonts


@pytest.fixture
def no_fallback_fonts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render as on a host with no extra fonts installed or configured."""
    monkeypatch.setattr(render, "KNOWN_FALLBACK_FONTS", ())
    monkeypatch.delenv("KASSA_DOCUMENT_FALLBACK_FONTS", raising=False)


@pytest.mark.usefixtures("no_fallback_fonts")
def test_greek_and_cyrillic_titles_print_as_they_are() -> None:
    data = unicode_invoice(GREEK, CYRILLIC)
    text = pdf_text(data)
    assert GREEK in text
    assert CYRILLIC in text
    assert f"{CYRILLIC} {GREEK}" in text  # the buyer, in bold
    assert "??" not in text
    assert "€1,234.56" in text


@pytest.mark.usefixtures("no_fallback_fonts")
def test_the_bundled_font_is_embedded_and_no_core_font_is_used() -> None:
    fonts = embedded_fonts(unicode_invoice(GREEK, CYRILLIC))
    assert fonts, "the PDF uses no font at all"
    assert all(fonts.values()), fonts  # every font program is in the file
    assert any("DejaVuSans" in name and "Bold" not in name for name in fonts), fonts
    assert any("DejaVuSans-Bold" in name or "DejaVuSansBold" in name for name in fonts), fonts
    assert not any("Helvetica" in name for name in fonts), fonts


def test_the_bundled_fonts_ship_with_their_licence() -> None:
    from fontTools.ttLib import TTFont

    for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"):
        cmap = TTFont(render.FONT_DIR / name).getBestCmap()
        # the cut keeps every script an invoice needs: Latin, Greek, Cyrillic, € and ₽
        for char in f"AzÄßŁő€₽\u2013\u2026{GREEK}{CYRILLIC}".replace(" ", ""):
            assert ord(char) in cmap, (name, char)
    assert "Bitstream" in (render.FONT_DIR / "LICENSE").read_text()


@pytest.mark.usefixtures("no_fallback_fonts")
def test_characters_no_font_prints_become_question_marks_without_raising() -> None:
    data = unicode_invoice(f"{JAPANESE} 🎉", GREEK)
    text = pdf_text(data)
    assert "????? ?" in text
    assert GREEK in text


def test_unusable_fallback_fonts_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "KNOWN_FALLBACK_FONTS", ())
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"not a font")
    wrong_kind = tmp_path / "font.txt"
    wrong_kind.write_text("hello")
    configured = [str(tmp_path / "missing.ttf"), str(broken), str(wrong_kind)]
    assert render.fallback_fonts(configured) == ()
    monkeypatch.setenv("KASSA_DOCUMENT_FALLBACK_FONTS", ",".join(configured))
    assert GREEK in pdf_text(unicode_invoice(GREEK, JAPANESE))


def test_fallback_fonts_setting_is_a_comma_separated_list() -> None:
    env = {"KASSA_DOCUMENT_FALLBACK_FONTS": " /fonts/a.ttf, /fonts/b.otf ,"}
    assert Settings.from_env(env).document_fallback_fonts == ("/fonts/a.ttf", "/fonts/b.otf")
    assert Settings.from_env({}).document_fallback_fonts == ()


def test_a_document_the_bundled_font_covers_ignores_fallback_fonts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Output does not depend on the host's fonts unless a character needs them."""
    monkeypatch.setattr(render, "KNOWN_FALLBACK_FONTS", ())
    doc = replace(invoice(), lines=(DocumentLine(GREEK, 1, 123456, 123456),))
    alone = render_pdf(doc, fallback_font_files=())
    some_font = str(render.FONT_DIR / "DejaVuSans.ttf")  # a valid font it never needs
    assert render_pdf(doc, fallback_font_files=[some_font]) == alone


def cjk_font() -> str | None:
    configured = os.environ.get("KASSA_DOCUMENT_FALLBACK_FONTS", "").split(",")
    for path in [p.strip() for p in configured if p.strip()] + list(render.KNOWN_FALLBACK_FONTS):
        if not Path(path).is_file():
            continue
        cmap = TTFont(path, lazy=True, fontNumber=0).getBestCmap() or {}
        if all(ord(char) in cmap for char in JAPANESE):
            return path
    return None


def test_japanese_prints_with_a_cjk_fallback_font(monkeypatch: pytest.MonkeyPatch) -> None:
    font = cjk_font()
    if font is None:
        pytest.skip(
            "no CJK font installed or configured (e.g. apt-get install fonts-noto-cjk or "
            "fonts-droid-fallback, or set KASSA_DOCUMENT_FALLBACK_FONTS)"
        )
    monkeypatch.setattr(render, "KNOWN_FALLBACK_FONTS", ())
    monkeypatch.setenv("KASSA_DOCUMENT_FALLBACK_FONTS", font)  # the setting, as in production
    data = unicode_invoice(JAPANESE, GREEK, CYRILLIC)
    text = pdf_text(data)
    for title in (JAPANESE, GREEK, CYRILLIC):
        assert title in text
    assert "?" not in text
    fonts = embedded_fonts(data)
    assert all(fonts.values()), fonts
    assert len(fonts) == 3, fonts  # DejaVu Sans, its bold, and the fallback font
    # Japanese date and yen sign in the locale's own spelling, now that a font prints them.
    assert "2026年3月5日" in pdf_text(render_pdf(invoice(123456, "JPY", "ja_JP")))
