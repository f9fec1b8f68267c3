"""GCP adapters: the ports over Pub/Sub, Firebase Auth and the other Google services.

Only this package imports Google client libraries; clients are built lazily, on first use.
"""
