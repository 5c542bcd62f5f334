"""Render a `Document` as a printable HTML page or as an A4 PDF. Pure: no I/O but templates.

Both renderers share one *view*: every text of the document (labels, formatted amounts,
the issue date) is computed once by `_view`, so the HTML and the PDF say the same thing.
Amounts go through `Money.format(doc.locale)` (Babel, Decimal-based); the issue date
through Babel's `format_date` in its "long" form; tax rates through `format_percent`.
Labels are English; the locale decides number and date formats only.

HTML: `templates/document.html.j2`, rendered by Jinja2 with autoescaping on, so names and
descriptions from customers can never inject markup. The page is self-contained (inline
CSS, no fonts, images or scripts from elsewhere) and prints on A4.

PDF: fpdf2 with its built-in Helvetica, encoded as cp1252 (WinAnsi). Font choice, on
purpose: the core fonts need no font file, keep the PDF small, make the output
byte-for-byte deterministic, and their text extracts cleanly. PyPI has no small, well-kept
package that bundles a broad Unicode TTF (the candidates are unmaintained multi-megabyte
CJK fonts, or matplotlib's DejaVu that covers no CJK either), and relying on fonts of the
host would make output differ between machines. The cost is coverage: cp1252 holds
Western European text and the € sign, but not Cyrillic, Greek, CJK or emoji. So every
text goes through `pdf_safe_text` first, which never raises: characters that cp1252 can
encode are kept; others are folded to a compatible form when one exists (NFKD:
"ő" -> "o", "ﬁ" -> "fi", fullwidth "￥" -> "¥", narrow no-break space -> no-break space);
combining marks and invisible format characters (variation selectors, zero-width joiners)
are dropped; anything else becomes "?". The HTML rendering keeps every character, so it is
the faithful rendering for non-Latin names. A Unicode TTF can be added later by
registering it with `FPDF.add_font` in `_DocumentPDF.__init__` and skipping the folding.

The PDF is deterministic: its creation date is `doc.issued_at`, and fpdf2 derives the
file identifier from the content, so the same document always gives the same bytes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, lru_cache
from typing import Literal

from babel.dates import format_date
from babel.numbers import format_decimal, format_percent, get_currency_symbol
from fpdf import FPDF
from fpdf.enums import Align, MethodReturnValue, XPos, YPos
from jinja2 import Environment, PackageLoader, StrictUndefined

from kassa.documents.model import Document, Party
from kassa.domain.money import Money

__all__ = ["pdf_safe_text", "render_html", "render_pdf"]

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


def _view(doc: Document, *, pdf: bool = False) -> DocumentView:
    """The texts of `doc`; with `pdf`, amounts and dates stay legible in the core font.

    For the PDF a currency symbol outside cp1252 ("₹", "zł", "￥") is replaced by the ISO
    code ("INR1,234.00"), and a date that cp1252 cannot spell ("2026年3月5日") is given in
    ISO 8601 ("2026-03-05"), rather than letting `pdf_safe_text` turn them into "?".
    """
    symbol = str(get_currency_symbol(doc.currency, locale=doc.locale))
    replace_symbol = pdf and not _printable(symbol)

    def money(amount: int) -> str:
        text = Money(amount, doc.currency).format(doc.locale)
        return text.replace(symbol, doc.currency) if replace_symbol else text

    invoice = doc.kind == "invoice"
    issued_on = doc.issued_at.date()
    issued_text = str(format_date(issued_on, "long", locale=doc.locale))
    if pdf and not _printable(issued_text):
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


# --------------------------------------------------------------------------- PDF text

_PDF_ENCODING = "cp1252"
# Spaces that must not break (Babel puts U+202F between digit groups in fr_FR, for one).
_NO_BREAK_SPACES = frozenset("\u00a0\u2007\u202f\u2060\ufeff")
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf"})


@lru_cache(maxsize=4096)
def _encodable(char: str) -> bool:
    try:
        char.encode(_PDF_ENCODING)
    except UnicodeEncodeError:
        return False
    return True


@lru_cache(maxsize=4096)
def _fold(char: str, multiline: bool) -> str:
    if char == "\n":
        return "\n" if multiline else " "
    if char in _NO_BREAK_SPACES:
        return "\u00a0"
    category = unicodedata.category(char)
    if char.isspace() or category == "Cc":
        return " "
    if _encodable(char):
        return char
    if char.isdecimal():  # Arabic-Indic, Devanagari, fullwidth ... digits
        return str(unicodedata.decimal(char))
    folded = "".join(
        part
        for part in unicodedata.normalize("NFKD", char)
        if _encodable(part) and unicodedata.category(part) not in _DROPPED_CATEGORIES
    )
    if folded:
        return folded
    return "" if category in _DROPPED_CATEGORIES else "?"


def _printable(text: str) -> bool:
    """True if the core font prints `text` as it is (digits of any script count)."""
    return all(_encodable(char) or char.isdecimal() or char.isspace() for char in text)


def pdf_safe_text(text: str, *, multiline: bool = False) -> str:
    """`text` made printable with the PDF's cp1252 core font; never raises.

    Control characters and unusual spaces become spaces (newlines too, unless
    `multiline`), characters outside cp1252 are folded or replaced by "?" (see the
    module docstring).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(_fold(char, multiline) for char in text)


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

    def __init__(self, view: DocumentView) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.view = view
        self.core_fonts_encoding = _PDF_ENCODING
        self.set_margins(_MARGIN, _MARGIN, _MARGIN)
        self.set_auto_page_break(auto=True, margin=_MARGIN + 6)
        self.in_table = False
        # pdf_safe_text turns every control character into a space, so no customer text can
        # contain this alias (with fpdf2's default "{nb}", a description could).
        self.alias_nb_pages(_PAGE_COUNT_ALIAS)

    def text_style(self, size: float, style: FontStyle = "", color: tuple[int, ...] = _INK) -> None:
        self.set_font("helvetica", style, size)
        self.set_text_color(*color)

    def header(self) -> None:
        if self.page > 1:
            self.text_style(8, color=_MUTED)
            self.cell(
                _BODY_WIDTH,
                _RUNNING_HEADER_HEIGHT - 4,
                pdf_safe_text(f"{self.view.title} (continued)"),
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
            f"{pdf_safe_text(self.view.title)} \u00b7 Page {self.page_no()}/{_PAGE_COUNT_ALIAS}",
            align=Align.C,
        )

    def table_headings(self) -> None:
        self.text_style(9, "B")
        self.set_fill_color(*_HEADINGS_FILL)
        for (width, align), label in zip(_COLUMNS, self.view.columns, strict=True):
            self.cell(width, _TABLE_HEADINGS_HEIGHT, label, align=align, fill=True)
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
        fixed = max((h for i, h in enumerate(heights) if i != flow), default=0.0)
        if self.will_page_break(max(heights)) and (
            max(heights) <= self.fresh_page_room() or self.will_page_break(fixed)
        ):
            self.add_page()
        left = self.l_margin if x is None else x
        starts = [left + sum(width for _, width, _ in cells[:i]) for i in range(len(cells))]
        top, page = self.y, self.page
        bottom = top
        order = list(range(len(cells)))  # reading order, for text extraction
        if max(heights) > self.fresh_page_room():
            order = [i for i in order if i != flow] + [flow]
        for i in order:
            text, width, align = cells[i]
            self.set_xy(starts[i], top)
            self.multi_cell(width, line_height, text, align=align, new_x=XPos.RIGHT)
            if self.page == page:
                bottom = max(bottom, self.y)
        self.set_xy(self.l_margin, self.y if self.page != page else bottom)

    def rule(self, color: tuple[int, int, int] = _RULE, width: float = 0.2) -> None:
        self.set_draw_color(*color)
        self.set_line_width(width)
        self.line(self.l_margin, self.y, self.l_margin + _BODY_WIDTH, self.y)


_COLUMNS = tuple(zip(_COLUMN_WIDTHS, (Align.L, Align.R, Align.R, Align.R), strict=True))


def _party_block(pdf: _DocumentPDF, party: PartyView, x: float, width: float) -> float:
    """Print one party at `x` from the current y; return the y below it."""
    pdf.text_style(8, "B", _MUTED)
    pdf.row([(pdf_safe_text(party.heading.upper()), width, Align.L)], x=x)
    pdf.text_style(10, "B")
    pdf.row([(pdf_safe_text(party.name), width, Align.L)], x=x)
    pdf.text_style(10)
    for line in party.lines:
        pdf.row([(pdf_safe_text(line), width, Align.L)], x=x)
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
        height += pdf.text_height(width, pdf_safe_text(text))
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
                (pdf_safe_text(text), width, align)
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
                (pdf_safe_text(total.label), label_width, Align.R),
                (pdf_safe_text(total.amount), amount_width, Align.R),
            ],
            line_height=6.0 if total.kind == "total" else _LINE_HEIGHT,
        )


def _write(pdf: _DocumentPDF, view: DocumentView) -> None:
    pdf.add_page()
    pdf.text_style(20, "B")
    pdf.row([(pdf_safe_text(view.title), _BODY_WIDTH, Align.L)], line_height=9.0)
    pdf.ln(2)
    for meta in view.meta:
        pdf.text_style(10)
        pdf.row(
            [
                (pdf_safe_text(f"{meta.label}:"), 30.0, Align.L),
                (pdf_safe_text(meta.value), _BODY_WIDTH - 30.0, Align.L),
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
        pdf.row([(pdf_safe_text(view.notes_heading.upper()), _BODY_WIDTH, Align.L)])
        pdf.text_style(9.5)
        pdf.row([(pdf_safe_text(view.notes, multiline=True), _BODY_WIDTH, Align.L)])


def render_pdf(doc: Document) -> bytes:
    """`doc` as an A4 PDF (one or more pages) with extractable text; deterministic."""
    view = _view(doc, pdf=True)
    pdf = _DocumentPDF(view)
    pdf.set_creation_date(doc.issued_at)
    pdf.set_title(pdf_safe_text(view.title))
    pdf.set_author(pdf_safe_text(doc.seller.name))
    pdf.set_creator("kassa")
    pdf.set_lang(view.lang)
    _write(pdf, view)
    return bytes(pdf.output())
