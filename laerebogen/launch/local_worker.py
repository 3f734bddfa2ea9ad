"""The local executor's worker: one process that runs the jobs it is sent one after another.

Starting vLLM costs about 30 s on 2 CPU cores (imports, tokenizer, weights), more than a small
step's work. A worker keeps its engine between jobs, so the steps of a local run that use the
same model start it once. Each job still gets its own log, exit status and retry: the launcher
sends a job as a line on the worker's stdin, the worker points its stdout and stderr at the
job's log, runs the job and reports ``<job id> <exit status>`` on its report pipe. A job that
fails ends the worker too, so a retry starts in a fresh process; SIGTERM stops the running job
like an exception (its committed chunks stay) and then the worker.
"""

from __future__ import annotations

import os
import sys
import traceback

import msgspec

from laerebogen.errors import USER_ERROR_STATUS, LaerebogenError
from laerebogen.launch.local import WorkOrder
from laerebogen.launch.task import Runner

FAILED = 1  # the exit status of a job stopped by an unexpected exception


def serve(report_fd: int, run: Runner) -> None:
    """Run the work orders of stdin with ``run`` until stdin closes or a job fails."""
    decoder = msgspec.json.Decoder(WorkOrder)
    try:
        with os.fdopen(report_fd, "w", buffering=1) as report:
            for line in sys.stdin:
                order = decoder.decode(line)
                status = _run(order, run)
                report.write(f"{order.job_id} {status}\n")
                if status:
                    return
    finally:
        run.close()


def _run(order: WorkOrder, run: Runner) -> int:
    """Run one job with the process's output in its log; returns its exit status."""
    sys.stdout.flush()
    sys.stderr.flush()
    descriptor = os.open(order.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(descriptor, sys.stdout.fileno())
    os.dup2(descriptor, sys.stderr.fileno())
    os.close(descriptor)
    try:
        run(order.task)
    except LaerebogenError as error:
        print(f"laerebogen: error: {error}", file=sys.stderr)
        return USER_ERROR_STATUS
    except Exception:
        traceback.print_exc()
        return FAILED
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0
