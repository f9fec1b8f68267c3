"""Firestore projection for apps: per-tenant documents derived from the ledger.

Nothing here is a source of truth: every document can be rebuilt from the ledger
(`rebuild.fold`). The pure modules do no I/O:

    documents  what one ledger event changes (`change_for`), and how a change merges into a
               stored document without ever going back to an older seq (`merge`)
    sink       the `ProjectionSink` port and its in-memory twin
    rebuild    the whole projection folded from the ledger's events, with progress
    follower   one `ledger-events` message -> the sink

The Firestore adapter is `proveniq.adapters.gcp.firestore`; docs/PROJECTIONS.md gives the
document shapes.
"""
