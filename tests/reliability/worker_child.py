"""A real worker process for reliability tests: kassa's Worker plus one test job kind.

`test.marker` appends an audit record naming its job (inside the job's transaction) and,
when KASSA_TEST_JOB_SLEEP_S is set, then sleeps, so a test can kill the process mid-job.

    python -m tests.reliability.worker_child forever|until-empty
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services import audit
from kassa.services.context import RequestContext
from kassa.services.jobs import JobHandler
from kassa.storage.tables import Job
from kassa.worker import Worker

MARKER = "test.marker"


def main() -> int:
    kassa = Kassa(Settings.from_env())
    ctx = RequestContext.system("test-worker")
    pause = float(os.environ.get("KASSA_TEST_JOB_SLEEP_S", "0"))
    worker: Worker

    def marker(session: Session, payload: dict[str, Any]) -> None:
        audit.record(
            session,
            ctx,
            at=kassa.clock(),
            action="test.job",
            subject=str(payload["n"]),
            after={"worker": worker.name},
        )
        session.flush()
        if pause:
            print("in-job", flush=True)
            time.sleep(pause)

    worker = Worker(kassa, poll_s=0.05, batch=5, handlers={MARKER: JobHandler(marker)})
    print("ready", flush=True)
    if os.environ.get("KASSA_TEST_START_ON_GO"):
        sys.stdin.readline()  # all processes start together: none finds the queue drained
    if sys.argv[1] == "forever":
        worker.run_forever()
        return 0
    while True:  # until-empty
        if worker.run_once():
            continue
        with kassa.db.transaction(read_only=True) as s:
            left = s.scalar(select(func.count()).where(Job.state.in_(["queued", "running"])))
        if not left:
            return 0
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
