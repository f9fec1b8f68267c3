"""Webhooks: signed deliveries of ledger events to partners' endpoints (Core manual §10).

    subscriptions  subscription values, event patterns, `whsec_` secrets and their rotation
    signing        the §10.2 body and both signature headers (X-Proveniq-Signature, webhook-*)
    schedule       the §10.4 retry schedule, Retry-After, outcome classification
    guard          the SSRF guard: https only, resolve once, refuse non-public addresses, pin
    sender         one HTTP attempt to the pinned address (no redirects, bounded time)
    secrets        the SecretBox port (envelope encryption of secrets at rest)
    ports          the store and task-queue ports the use cases need
    deliveries     Dispatcher: fan-out, attempt, replay, test event, listing, sweep
    manage         Subscriptions: create / list / get / update / delete / rotate-secret
    worker         draining a polled task queue (the local stack's Cloud Tasks twin)

Everything here is pure or stdlib-only; adapters live in `proveniq.adapters.*`.
"""
