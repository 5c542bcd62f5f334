"""Invoices and credit notes: a validated `Document` and its HTML and PDF renderings.

Pure code: nothing here reads a database or writes a file. Build a `Document` from an order
or a refund, then call `render_html(doc)` or `render_pdf(doc)`.
"""

from kassa.documents.model import (
    Document,
    DocumentKind,
    DocumentLine,
    Party,
    TaxLine,
    document_from_json,
    document_to_json,
)
from kassa.documents.render import pdf_safe_text, render_html, render_pdf

__all__ = [
    "Document",
    "DocumentKind",
    "DocumentLine",
    "Party",
    "TaxLine",
    "document_from_json",
    "document_to_json",
    "pdf_safe_text",
    "render_html",
    "render_pdf",
]
