"""`GET /v1/kpis`: revenue KPIs over calendar days of the shop (analyst+)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import PeriodParams, period_params, router
from kassa.api.schemas import KpiReportOut
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext

kpis = router("/v1/kpis", "kpis")


@kpis.get(
    "",
    response_model=KpiReportOut,
    responses=problems(422, "invalid_period", "unknown_currency"),
)
def kpi_report(
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_ANALYTICS))],
    kassa: Annotated[Kassa, Depends(kassa_dependency)],
    period: Annotated[PeriodParams, Depends(period_params)],
    currency: Annotated[
        str | None, Query(max_length=3, description="only this currency (ISO 4217)")
    ] = None,
) -> object:
    query = kassa.kpis.query(
        window=period.window, first=period.from_, last=period.to, currency=currency
    )
    return kassa.kpis.report(query)
