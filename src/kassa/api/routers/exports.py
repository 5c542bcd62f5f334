"""CSV exports (analyst+): `GET /v1/exports/{name}.csv` streamed, and the column contract.

The export is opened in the endpoint (period checked, snapshot opened, first batch read,
so a refusal or an outage is still a problem+json answer) and then streamed from a
thread-pool hop per batch. However the stream ends (finished, the client gone, an error),
`CsvDownload` closes the export afterwards, which ends its snapshot and writes its audit
record (`services.exports`).
"""

from __future__ import annotations

import logging
from typing import Annotated

import anyio
from fastapi import Depends, Path
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import PeriodParams, period_params, router
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext
from kassa.services.exports import CsvExport

log = logging.getLogger("kassa.api")

exports = router("/v1/exports", "exports")
Exporter = Annotated[RequestContext, Depends(require(Permission.EXPORT_DATA))]
Core = Annotated[Kassa, Depends(kassa_dependency)]
CSV = "text/csv; charset=utf-8"


class CsvDownload(StreamingResponse):
    """A CSV export streamed as an attachment, closed (and so audited) once the response
    is over, whether it finished or not."""

    def __init__(self, export: CsvExport) -> None:
        super().__init__(
            iter(export),
            media_type=CSV,
            headers={
                "Content-Disposition": f'attachment; filename="{export.filename}"',
                "Cache-Control": "no-store",  # customer data: no copy in any cache
            },
        )
        self.export = export

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # shielded: a request cancelled mid-stream still ends its snapshot and audits
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self._close)

    def _close(self) -> None:
        try:
            self.export.close()
        except Exception:  # the response is gone: all that is left is to say so
            log.exception("closing the %s export failed (audit record)", self.export.name)


@exports.get(
    "/contract",
    response_model=dict[str, list[str]],
    summary="The columns of every export, in order (a column is only ever added at the end)",
)
def export_contract(ctx: Exporter, kassa: Core) -> object:
    return kassa.exports.contract()


@exports.get(
    "/{name}.csv",
    response_class=Response,
    summary="Download an export as CSV (orders, payments, refunds, customers, products, kpis)",
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        **problems(404, "export_not_found", 409, "exports_busy", 422, "invalid_period"),
    },
)
def export_csv(
    ctx: Exporter,
    kassa: Core,
    name: Annotated[str, Path(max_length=40, description="the export, e.g. `orders`")],
    period: Annotated[PeriodParams, Depends(period_params)],
) -> Response:
    export = kassa.exports.open(ctx, name, window=period.window, from_=period.from_, to=period.to)
    return CsvDownload(export)
