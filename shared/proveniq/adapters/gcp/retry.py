"""The bounded retry every Google client call of ours uses: short doubling backoff on the
transient exceptions each adapter names, never past the adapter's own timeout."""

from __future__ import annotations

from google.api_core import retry as api_retry


def bounded_retry(retried: tuple[type[Exception], ...], *, timeout: float) -> api_retry.Retry:
    return api_retry.Retry(
        predicate=api_retry.if_exception_type(*retried),
        initial=0.1,
        maximum=min(2.0, timeout),
        multiplier=2.0,
        timeout=timeout,
    )
