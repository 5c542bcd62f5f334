"""Render a `Document` as a printable HTML page or an A4 PDF. No I/O but templates and fonts.

Both renderers share one *view*: every text of the document (labels, formatted amounts,
the issue date) is computed once by `_view`, so the HTML and the PDF say the same thing.
Amounts go through `Money.format(doc.locale)` (Babel, Decimal-based); the issue date
through Babel's `format_date` in its "long" form; tax rates through `format_percent`.
Labels are English; the locale decides number and date formats only.

HTML: `templates/document.html.j2`, rendered by Jinja2 with autoescaping on, so names and
descriptions from customers can never inject markup. The page is self-contained (inline
CSS, no fonts, images or scripts from elsewhere) and prints on A4.

PDF: fpdf2 with DejaVu Sans (regular and bold), shipped in `fonts/` and embedded as a
subset of the glyphs used, so Latin, Greek and Cyrillic print as they are on every host.
Characters DejaVu Sans lacks (CJK, ...) use fallback fonts: the files named by
`KASSA_DOCUMENT_FALLBACK_FONTS`, then the installed ones of `KNOWN_FALLBACK_FONTS` (Noto
CJK, Droid Sans Fallback, ...). A fallback font is embedded only in documents that need it,
so a document the bundled font covers is byte-for-byte the same wherever it is rendered.
Every text goes through `pdf_safe_text` first, which never raises: it NFC-normalises, keeps
what some font prints, turns control characters into spaces, drops invisible format
characters, folds the rest to a printable compatible form when one exists (NFKD:
fullwidth "￥" -> "¥", Devanagari digits -> 0-9) and replaces what is left by "?". There is no text
shaping (that would need uharfbuzz): right-to-left scripts print in logical order and
Arabic letters unjoined. The HTML rendering keeps every character and is the faithful
rendering for such text. Cost: an embedded font makes a PDF ~25 KB instead of ~2 KB and
rendering slower (font parsing and subsetting, more so with a large CJK fallback font).

The PDF is deterministic: its creation date is `doc.issued_at`, and fpdf2 derives the
file identifier from the content, so the same document always gives the same bytes.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

from babel.dates import format_date
from babel.numbers import format_decimal, format_percent, get_currency_symbol
from fontTools.ttLib import TTFont  # type: ignore[import-untyped]
from fpdf import FPDF
from fpdf.enums import Align, MethodReturnValue, XPos, YPos
from jinja2 import Environment, PackageLoader, StrictUndefined

from kassa.config import Settings
from kassa.documents.model import Document, Party
from kassa.domain.money import Money

__all__ = ["KNOWN_FALLBACK_FONTS", "fallback_fonts", "pdf_safe_text", "render_html", "render_pdf"]

# --------------------------------------------------------------------------- the view


@dataclass(frozen=True, slots=True)
class PartyView:
    heading: str
    name: str
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LineView:
    description: str
    quantity: str
    unit_price: str
    amount: str


@dataclass(frozen=True, slots=True)
class TotalRow:
    label: str
    amount: str
    kind: Literal["subtotal", "tax", "total"]


@dataclass(frozen=True, slots=True)
class MetaRow:
    label: str
    value: str
    iso: str | None = None  # machine-readable date, for <time datetime=...>


@dataclass(frozen=True, slots=True)
class DocumentView:
    """Every text of a rendered document, already formatted."""

    kind: str
    lang: str
    title: str
    meta: tuple[MetaRow, ...]
    seller: PartyView
    buyer: PartyView
    columns: tuple[str, str, str, str]
    lines: tuple[LineView, ...]
    totals: tuple[TotalRow, ...]
    notes_heading: str
    notes: str | None


def _party(heading: str, party: Party) -> PartyView:
    lines = list(party.lines)
    if party.tax_id:
        lines.append(f"Tax ID: {party.tax_id}")
    if party.email:
        lines.append(party.email)
    return PartyView(heading, party.name, tuple(lines))


def _rate(rate_bp: int, locale: str) -> str:
    """1900 bp -> "19%" (en_US) / "19 %" (de_DE); 550 bp -> "5.5%" / "5,5 %"."""
    return str(
        format_percent(Decimal(rate_bp).scaleb(-4), locale=locale, decimal_quantization=False)
    )


def _view(doc: Document, *, pdf: bool = False, fallbacks: tuple[str, ...] = ()) -> DocumentView:
    """The texts of `doc`; with `pdf`, amounts and dates stay legible in the PDF's fonts.

    For the PDF a currency symbol that neither the bundled font nor a fallback font prints
    ("￥" without a CJK font) is replaced by the ISO code ("JPY123,456"), and such a date
    ("2026年3月5日") is given in ISO 8601 ("2026-03-05"), rather than letting
    `pdf_safe_text` turn them into "?".
    """
    symbol = str(get_currency_symbol(doc.currency, locale=doc.locale))
    replace_symbol = pdf and not _printable(symbol, fallbacks)

    def money(amount: int) -> str:
        text = Money(amount, doc.currency).format(doc.locale)
        return text.replace(symbol, doc.currency) if replace_symbol else text

    invoice = doc.kind == "invoice"
    issued_on = doc.issued_at.date()
    issued_text = str(format_date(issued_on, "long", locale=doc.locale))
    if pdf and not _printable(issued_text, fallbacks):
        issued_text = issued_on.isoformat()
    meta = [MetaRow("Issue date", issued_text, issued_on.isoformat())]
    if doc.reference:
        meta.append(MetaRow("Reference", doc.reference))
    totals = [TotalRow("Subtotal", money(doc.subtotal), "subtotal")]
    totals += [
        TotalRow(f"incl. {tax.label} {_rate(tax.rate_bp, doc.locale)}", money(tax.amount), "tax")
        for tax in doc.taxes
    ]
    totals.append(TotalRow("Total" if invoice else "Total credited", money(doc.total), "total"))
    return DocumentView(
        kind=doc.kind,
        lang=doc.locale.replace("_", "-"),
        title=doc.title,
        meta=tuple(meta),
        seller=_party("From", doc.seller),
        buyer=_party("Bill to" if invoice else "Credited to", doc.buyer),
        columns=("Description", "Qty", "Unit price", "Amount"),
        lines=tuple(
            LineView(
                description=line.description,
                quantity=str(format_decimal(line.quantity, locale=doc.locale)),
                unit_price=money(line.unit_amount),
                amount=money(line.amount),
            )
            for line in doc.lines
        ),
        totals=tuple(totals),
        notes_heading="Notes",
        notes=doc.notes,
    )


# --------------------------------------------------------------------------- HTML


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("kassa.documents", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(doc: Document) -> str:
    """A complete, self-contained, printable HTML5 page for `doc` (all text escaped)."""
    template = _environment().get_template("document.html.j2")
    return template.render(doc=_view(doc))


# --------------------------------------------------------------------------- PDF fonts

FONT_DIR = Path(__file__).parent / "fonts"
# DejaVu Sans, shipped in the package (Bitstream Vera licence, see fonts/LICENSE).
_MAIN_FAMILY = "dejavusans"
_MAIN_FONTS: dict[str, Path] = {
    "": FONT_DIR / "DejaVuSans.ttf",
    "B": FONT_DIR / "DejaVuSans-Bold.ttf",
}
# Broad-coverage fonts often installed (Debian/Ubuntu, Fedora, Arch, Alpine paths); those
# present are tried after the configured ones, for characters DejaVu Sans lacks.
KNOWN_FALLBACK_FONTS: tuple[str, ...] = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-sans-cjk-fonts/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJKjp-Regular.otf",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/droid/DroidSansFallback.ttf",
    "/usr/share/fonts/google-droid-sans-fonts/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/wenquanyi/wqy-zenhei/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/unifont/unifont.ttf",
)
_FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")

log = logging.getLogger(__name__)


@cache
def _cmap(path: str) -> frozenset[int]:
    """The code points the font file at `path` has glyphs for; empty if it is unusable."""
    if not path.lower().endswith(_FONT_SUFFIXES):
        log.warning("document font %s ignored: not a TTF/OTF/TTC file", path)
        return frozenset()
    try:
        font = TTFont(path, lazy=True, fontNumber=0)
        try:
            return frozenset(font.getBestCmap() or {})
        finally:
            font.close()
    except Exception as exc:  # a missing, unreadable or broken file: render without it
        log.warning("document font %s ignored: %s", path, exc)
        return frozenset()


@cache
def _main_cmap() -> frozenset[int]:
    """What both styles of the bundled font can print."""
    regular, bold = (_cmap(str(path)) for path in _MAIN_FONTS.values())
    return regular & bold


def fallback_fonts(configured: Sequence[str | Path] | None = None) -> tuple[str, ...]:
    """The fallback fonts, in order: `configured` (by default `KASSA_DOCUMENT_FALLBACK_FONTS`),
    then those of `KNOWN_FALLBACK_FONTS` that are installed. Unusable files are left out."""
    if configured is None:
        configured = Settings.from_env().document_fallback_fonts
    found = [str(path) for path in configured]
    found += [path for path in KNOWN_FALLBACK_FONTS if Path(path).is_file()]
    return tuple(path for path in dict.fromkeys(found) if _cmap(path))


@lru_cache(maxsize=8192)
def _font_for(char: str, fallbacks: tuple[str, ...]) -> int | None:
    """-1 if the bundled font prints `char`, else the index of the first fallback that
    does, else None."""
    code = ord(char)
    if code in _main_cmap():
        return -1
    for index, path in enumerate(fallbacks):
        if code in _cmap(path):
            return index
    return None


# --------------------------------------------------------------------------- PDF text

# Spaces that must not break (Babel puts U+202F between digit groups in fr_FR, for one).
_NO_BREAK_SPACES = frozenset("\u00a0\u2007\u202f\u2060\ufeff")
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf"})
_SOFT_HYPHEN = "\u00ad"


def _invisible(char: str) -> bool:
    """Format characters (zero-width joiners, direction marks) and variation selectors:
    without a shaping engine they do nothing but risk an empty box."""
    if char == _SOFT_HYPHEN:
        return False
    return unicodedata.category(char) == "Cf" or "VARIATION SELECTOR" in unicodedata.name(char, "")


@lru_cache(maxsize=8192)
def _fold(char: str, multiline: bool, fallbacks: tuple[str, ...]) -> str:
    if char == "\n":
        return "\n" if multiline else " "
    if char in _NO_BREAK_SPACES:
        return "\u00a0"
    category = unicodedata.category(char)
    if char.isspace() or category == "Cc":
        return " "
    if _invisible(char):
        return ""
    if _font_for(char, fallbacks) is not None:
        return char
    if char.isdecimal():  # digits of scripts no font covers
        return str(unicodedata.decimal(char))
    folded = "".join(
        part
        for part in unicodedata.normalize("NFKD", char)
        if _font_for(part, fallbacks) is not None
        and unicodedata.category(part) not in _DROPPED_CATEGORIES
    )
    if folded:
        return folded
    return "" if category in _DROPPED_CATEGORIES else "?"


def _printable(text: str, fallbacks: tuple[str, ...]) -> bool:
    """True if the PDF's fonts print `text` as it is (digits of any script count)."""
    return all(
        _font_for(char, fallbacks) is not None or char.isdecimal() or char.isspace()
        for char in unicodedata.normalize("NFC", text)
    )


def pdf_safe_text(
    text: str, *, multiline: bool = False, fallbacks: Sequence[str | Path] = ()
) -> str:
    """`text` made printable with the PDF's fonts; never raises.

    The text is NFC-normalised (a letter and its combining accent become one character).
    Characters that the bundled DejaVu Sans or one of the `fallbacks` font files print are
    kept. Control characters and unusual spaces become spaces (newlines too, unless
    `multiline`); invisible format characters and variation selectors are dropped; other
    characters are folded to a compatible form the fonts print when one exists (NFKD:
    "ﬁ" -> "fi", digits of any script -> 0-9), else replaced by "?".
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    keys = tuple(str(path) for path in fallbacks)
    return "".join(_fold(char, multiline, keys) for char in unicodedata.normalize("NFC", text))


# --------------------------------------------------------------------------- PDF layout

_MARGIN = 18.0  # mm on every side
_BODY_WIDTH = 210.0 - 2 * _MARGIN
_COLUMN_WIDTHS = (84.0, 18.0, 36.0, 36.0)  # description, qty, unit price, amount
_LINE_HEIGHT = 5.0
_RUNNING_HEADER_HEIGHT = 10.0
_TABLE_HEADINGS_HEIGHT = 7.0
_INK = (33, 37, 41)
_MUTED = (108, 117, 125)
_RULE = (206, 212, 218)
_HEADINGS_FILL = (241, 243, 245)
_PAGE_COUNT_ALIAS = "\x1a\x1a"

FontStyle = Literal["", "B", "I", "BI"]


class _DocumentPDF(FPDF):
    """A4 in mm; a running header on continuation pages, and a footer on every page."""

    def __init__(self, view: DocumentView, fallbacks: tuple[str, ...] = ()) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.view = view
        self.fallbacks = fallbacks
        self.fallbacks_in_use: list[str] = []  # font families, in the order first needed
        for style, path in _MAIN_FONTS.items():
            self.add_font(_MAIN_FAMILY, style, path)
        self.set_margins(_MARGIN, _MARGIN, _MARGIN)
        self.set_auto_page_break(auto=True, margin=_MARGIN + 6)
        self.in_table = False
        # pdf_safe_text turns every control character into a space, so no customer text can
        # contain this alias (with fpdf2's default "{nb}", a description could).
        self.alias_nb_pages(_PAGE_COUNT_ALIAS)

    def safe(self, text: str, *, multiline: bool = False) -> str:
        """`pdf_safe_text(text)`, embedding each fallback font the first time it is needed.

        A fallback font is added only to documents that use it, so a document in Latin,
        Greek or Cyrillic is the same on every host, whatever fonts are installed there.
        """
        safe = pdf_safe_text(text, multiline=multiline, fallbacks=self.fallbacks)
        for char in set(safe):
            index = _font_for(char, self.fallbacks)
            if index is None or index < 0:
                continue
            family = f"fallback{index}"
            if family not in self.fallbacks_in_use:
                self.add_font(family, "", self.fallbacks[index])
                self.fallbacks_in_use.append(family)
                # In fallback order, for bold text too (fallback fonts come in one style).
                ordered = sorted(self.fallbacks_in_use, key=lambda name: int(name[8:]))
                self.set_fallback_fonts(ordered, exact_match=False)
        return safe

    def text_style(self, size: float, style: FontStyle = "", color: tuple[int, ...] = _INK) -> None:
        self.set_font(_MAIN_FAMILY, style, size)
        self.set_text_color(*color)

    def header(self) -> None:
        if self.page > 1:
            self.text_style(8, color=_MUTED)
            self.cell(
                _BODY_WIDTH,
                _RUNNING_HEADER_HEIGHT - 4,
                self.safe(f"{self.view.title} (continued)"),
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
            self.ln(4)
        if self.in_table:
            self.table_headings()

    def footer(self) -> None:
        self.set_y(-_MARGIN)
        self.text_style(8, color=_MUTED)
        self.cell(
            _BODY_WIDTH,
            5,
            f"{self.safe(self.view.title)} \u00b7 Page {self.page_no()}/{_PAGE_COUNT_ALIAS}",
            align=Align.C,
        )

    def table_headings(self) -> None:
        self.text_style(9, "B")
        self.set_fill_color(*_HEADINGS_FILL)
        for (width, align), label in zip(_COLUMNS, self.view.columns, strict=True):
            self.cell(width, _TABLE_HEADINGS_HEIGHT, self.safe(label), align=align, fill=True)
        self.ln(_TABLE_HEADINGS_HEIGHT + 1)

    def fresh_page_room(self) -> float:
        """Height available for content right below the headers of a new page."""
        top = self.t_margin + _RUNNING_HEADER_HEIGHT
        if self.in_table:
            top += _TABLE_HEADINGS_HEIGHT + 1
        return self.page_break_trigger - top

    def text_height(self, width: float, text: str, line_height: float = _LINE_HEIGHT) -> float:
        result = self.multi_cell(
            width, line_height, text, dry_run=True, output=MethodReturnValue.HEIGHT
        )
        assert isinstance(result, float | int)
        return float(result)

    def row(
        self,
        cells: Sequence[tuple[str, float, Align]],
        *,
        flow: int = 0,
        x: float | None = None,
        line_height: float = _LINE_HEIGHT,
    ) -> None:
        """Print `cells` side by side, each wrapped in its width, then move below them.

        The row moves to a new page if it does not fit on this one but fits on a fresh one.
        A row taller than a page (an enormous description) cannot fit anywhere: its other
        cells are printed at its top and its `flow` cell then runs on across pages.
        """
        heights = [self.text_height(width, text, line_height) for text, width, _ in cells]
        self._make_room(heights, flow)
        left = self.l_margin if x is None else x
        starts = [left + sum(width for _, width, _ in cells[:i]) for i in range(len(cells))]
        top, page = self.y, self.page
        bottom = top
        for i in self._reading_order(heights, flow):
            text, width, align = cells[i]
            self.set_xy(starts[i], top)
            self.multi_cell(width, line_height, text, align=align, new_x=XPos.RIGHT)
            if self.page == page:
                bottom = max(bottom, self.y)
        self.set_xy(self.l_margin, self.y if self.page != page else bottom)

    def _make_room(self, heights: list[float], flow: int) -> None:
        """Start a new page for a row of cells `heights` tall that does not fit on this
        one, if it fits on a fresh one or if even its cells other than `flow` do not fit
        here."""
        tallest = max(heights)
        if not self.will_page_break(tallest):
            return
        fixed = max((h for i, h in enumerate(heights) if i != flow), default=0.0)
        if tallest <= self.fresh_page_room() or self.will_page_break(fixed):
            self.add_page()

    def _reading_order(self, heights: list[float], flow: int) -> list[int]:
        """The order to print a row's cells in, for text extraction: left to right, but
        a `flow` cell that runs on across pages last."""
        order = list(range(len(heights)))
        if max(heights) > self.fresh_page_room():
            order = [i for i in order if i != flow] + [flow]
        return order

    def rule(self, color: tuple[int, int, int] = _RULE, width: float = 0.2) -> None:
        self.set_draw_color(*color)
        self.set_line_width(width)
        self.line(self.l_margin, self.y, self.l_margin + _BODY_WIDTH, self.y)


_COLUMNS = tuple(zip(_COLUMN_WIDTHS, (Align.L, Align.R, Align.R, Align.R), strict=True))


def _party_block(pdf: _DocumentPDF, party: PartyView, x: float, width: float) -> float:
    """Print one party at `x` from the current y; return the y below it."""
    pdf.text_style(8, "B", _MUTED)
    pdf.row([(pdf.safe(party.heading.upper()), width, Align.L)], x=x)
    pdf.text_style(10, "B")
    pdf.row([(pdf.safe(party.name), width, Align.L)], x=x)
    pdf.text_style(10)
    for line in party.lines:
        pdf.row([(pdf.safe(line), width, Align.L)], x=x)
    return pdf.y


def _party_height(pdf: _DocumentPDF, party: PartyView, width: float) -> float:
    texts: list[tuple[float, FontStyle, str]] = [
        (8, "B", party.heading.upper()),
        (10, "B", party.name),
        *((10.0, "", line) for line in party.lines),
    ]
    height = 0.0
    for size, style, text in texts:
        pdf.text_style(size, style)
        height += pdf.text_height(width, pdf.safe(text))
    return height


def _parties(pdf: _DocumentPDF, view: DocumentView) -> None:
    """Seller and buyer side by side if both fit on this page, else one after the other."""
    gap = 8.0
    width = (_BODY_WIDTH - gap) / 2
    tallest = max(_party_height(pdf, party, width) for party in (view.seller, view.buyer))
    if pdf.will_page_break(tallest) and tallest <= pdf.fresh_page_room():
        pdf.add_page()
    if pdf.will_page_break(tallest):
        for party in (view.seller, view.buyer):
            _party_block(pdf, party, pdf.l_margin, _BODY_WIDTH)
            pdf.ln(4)
        return
    top = pdf.y
    bottoms = []
    for party, x in ((view.seller, pdf.l_margin), (view.buyer, pdf.l_margin + width + gap)):
        pdf.set_y(top)
        bottoms.append(_party_block(pdf, party, x, width))
    pdf.set_xy(pdf.l_margin, max(bottoms))


def _lines_table(pdf: _DocumentPDF, view: DocumentView) -> None:
    # Start the table on a new page unless the headings and one line fit on this one.
    if pdf.will_page_break(_TABLE_HEADINGS_HEIGHT + 1 + 2 * _LINE_HEIGHT):
        pdf.add_page()
    pdf.in_table = True
    pdf.table_headings()
    for line in view.lines:
        pdf.text_style(9.5)
        texts = (line.description, line.quantity, line.unit_price, line.amount)
        pdf.row(
            [
                (pdf.safe(text), width, align)
                for text, (width, align) in zip(texts, _COLUMNS, strict=True)
            ],
            line_height=_LINE_HEIGHT,
        )
        pdf.ln(1)
        pdf.rule()
        pdf.ln(1)
    pdf.in_table = False


def _totals(pdf: _DocumentPDF, view: DocumentView) -> None:
    amount_width = _COLUMN_WIDTHS[-1]
    label_width = _BODY_WIDTH - amount_width
    pdf.ln(1)
    for total in view.totals:
        if total.kind == "total":
            pdf.ln(1)
            pdf.rule(_INK, 0.3)
            pdf.ln(1.5)
            pdf.text_style(11, "B")
        else:
            pdf.text_style(9.5, color=_MUTED if total.kind == "tax" else _INK)
        pdf.row(
            [
                (pdf.safe(total.label), label_width, Align.R),
                (pdf.safe(total.amount), amount_width, Align.R),
            ],
            line_height=6.0 if total.kind == "total" else _LINE_HEIGHT,
        )


def _write(pdf: _DocumentPDF, view: DocumentView) -> None:
    pdf.add_page()
    pdf.text_style(20, "B")
    pdf.row([(pdf.safe(view.title), _BODY_WIDTH, Align.L)], line_height=9.0)
    pdf.ln(2)
    for meta in view.meta:
        pdf.text_style(10)
        pdf.row(
            [
                (pdf.safe(f"{meta.label}:"), 30.0, Align.L),
                (pdf.safe(meta.value), _BODY_WIDTH - 30.0, Align.L),
            ],
            flow=1,
        )
    pdf.ln(8)
    _parties(pdf, view)
    pdf.ln(10)
    _lines_table(pdf, view)
    _totals(pdf, view)
    if view.notes:
        pdf.ln(10)
        pdf.text_style(8, "B", _MUTED)
        pdf.row([(pdf.safe(view.notes_heading.upper()), _BODY_WIDTH, Align.L)])
        pdf.text_style(9.5)
        pdf.row([(pdf.safe(view.notes, multiline=True), _BODY_WIDTH, Align.L)])


def render_pdf(doc: Document, *, fallback_font_files: Sequence[str | Path] | None = None) -> bytes:
    """`doc` as an A4 PDF (one or more pages) with extractable text; deterministic.

    `fallback_font_files`: font files for characters DejaVu Sans lacks, by default those of
    `KASSA_DOCUMENT_FALLBACK_FONTS`; installed `KNOWN_FALLBACK_FONTS` are tried after them.
    """
    fallbacks = fallback_fonts(fallback_font_files)
    view = _view(doc, pdf=True, fallbacks=fallbacks)
    pdf = _DocumentPDF(view, fallbacks)
    pdf.set_creation_date(doc.issued_at)
    pdf.set_title(pdf_safe_text(view.title, fallbacks=fallbacks))
    pdf.set_author(pdf_safe_text(doc.seller.name, fallbacks=fallbacks))
    pdf.set_creator("kassa")
    pdf.set_lang(view.lang)
    _write(pdf, view)
    return bytes(pdf.output())
