"""`GET /v1/kpis`: revenue KPIs over calendar days of the shop (analyst+)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import router
from kassa.api.schemas import KpiReportOut
from kassa.bootstrap import Kassa
from kassa.domain.kpis import NamedWindow
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext

kpis = router("/v1/kpis", "kpis")

_WINDOWS = ", ".join(w.value for w in NamedWindow)


@kpis.get(
    "",
    response_model=KpiReportOut,
    responses=problems(422, "invalid_date_range", "unknown_currency"),
)
def kpi_report(
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_ANALYTICS))],
    kassa: Annotated[Kassa, Depends(kassa_dependency)],
    window: Annotated[
        str | None, Query(max_length=12, description=f"one of {_WINDOWS}; or from and to")
    ] = None,
    first: Annotated[
        str | None,
        Query(alias="from", max_length=10, description="first day, YYYY-MM-DD (with to)"),
    ] = None,
    last: Annotated[
        str | None,
        Query(alias="to", max_length=10, description="last day, YYYY-MM-DD, included"),
    ] = None,
    currency: Annotated[
        str | None, Query(max_length=3, description="only this currency (ISO 4217)")
    ] = None,
) -> object:
    query = kassa.kpis.query(window=window, first=first, last=last, currency=currency)
    return kassa.kpis.report(query)
