"""``splice worker``: recipes on Celery workers (Redis broker, PostgreSQL state).

:mod:`.broker` reads ``SPLICE_BROKER_URL`` and checks that the broker answers; :mod:`.app`
builds the Celery application (late acknowledgement, one message prefetched per worker
thread); :mod:`.tasks` holds the tasks (a webhook delivery, stored events, a poll) and
:mod:`.enqueue` what ``splice serve`` calls to send them. Each task is idempotent under
redelivery: the ledger's claims and leases in the state database make each action happen once
(:mod:`splice.run.claimed`).
"""
