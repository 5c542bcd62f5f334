"""CSV exports (analyst+): `GET /v1/exports/{name}.csv` streamed, and the column contract.

The export is opened in the endpoint (period checked, snapshot opened, first batch read,
so a refusal or an outage is still a problem+json answer) and then streamed from a
thread-pool hop per batch. However the stream ends (finished, the client gone, an error),
`CsvDownload` (kassa.web.downloads, shared with the dashboard) closes the export
afterwards, which ends its snapshot and writes its audit record (`services.exports`).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Path
from starlette.responses import Response

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import PeriodParams, period_params, router
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext
from kassa.web.downloads import CsvDownload

log = logging.getLogger("kassa.api")

exports = router("/v1/exports", "exports")
Exporter = Annotated[RequestContext, Depends(require(Permission.EXPORT_DATA))]
Core = Annotated[Kassa, Depends(kassa_dependency)]


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
    return CsvDownload(export, log=log)
