"""Durable async jobs: stored before the submit is answered, run through the runtime, kept after.

| module | what |
|---|---|
| ``record``   | a job's status and stored row; the submit request (Baseten's body shape), validated |
| ``settings`` | where jobs live and how they run (flags and ``KINGPOST_JOBS_*``) |
| ``store``    | the store protocol and the SQL its backends share |
| ``sqlite``, ``postgres`` | the backends: one WAL file in a data directory; a PostgreSQL server |
| ``service``  | submit/get/cancel, and the loops that claim, run, lease, deliver and purge |
| ``webhooks`` | signing and POSTing a finished job's result |
| ``handle``   | ``bundle.submit(x)``'s return value |

The HTTP routes that expose jobs live apart, in :mod:`kingpost.server.jobs`.
"""

from kingpost.jobs.handle import JobHandle
from kingpost.jobs.record import JobRecord, JobStatus, Retry, Submit, make_submit, parse_submit
from kingpost.jobs.service import JobService, open_store
from kingpost.jobs.settings import JobSettings
from kingpost.jobs.store import JobStore

__all__ = ["JobHandle", "JobRecord", "JobService", "JobSettings", "JobStatus", "JobStore", "Retry", "Submit",
           "make_submit", "open_store", "parse_submit"]
