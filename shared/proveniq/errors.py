"""One error root for the whole kernel.

    ProveniqError                      code              HTTP
    ├── ValidationError                VALIDATION_ERROR  400   (field, message; details list)
    │   └── FormatError                VALIDATION_ERROR  400   malformed checkpoint / note / bundle
    ├── VerificationError              VERIFICATION_FAILED 422 (what, expected, found)
    │   ├── InclusionProofError
    │   ├── ConsistencyProofError
    │   └── SignatureError
    ├── AuthRequired                   AUTH_REQUIRED     401
    ├── AuthInvalid                    AUTH_INVALID      401
    ├── Forbidden                      FORBIDDEN         403
    ├── NotFound                       NOT_FOUND         404
    ├── MethodNotAllowed               METHOD_NOT_ALLOWED 405
    ├── Conflict                       CONFLICT          409
    │   ├── IdempotencyConflict        IDEMPOTENCY_CONFLICT
    │   └── LifecycleConflict          INVALID_TRANSITION
    ├── PayloadTooLarge                PAYLOAD_TOO_LARGE 413
    ├── RateLimited                    RATE_LIMITED      429   (retry_after seconds)
    ├── Unavailable                    UNAVAILABLE       503   transient: retry
    └── InternalError                  INTERNAL_ERROR    500

`code` and `status` on each class are the single table mapping errors to the Core manual's
error codes and HTTP statuses. Adapters translate vendor exceptions with ``raise ... from e``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class FieldIssue:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class ProveniqError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500
    transient: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> list[dict[str, Any]]:
        return []


class ValidationError(ProveniqError):
    code = "VALIDATION_ERROR"
    status = 400

    def __init__(self, message: str, *, field: str = "", issues: list[FieldIssue] | None = None):
        super().__init__(message)
        self.field = field
        self.issues = (
            issues if issues is not None else ([FieldIssue(field, message)] if field else [])
        )

    def details(self) -> list[dict[str, Any]]:
        return [i.as_dict() for i in self.issues]


class FormatError(ValidationError):
    """Malformed text or structure (checkpoint, signed note, bundle, hex/base64)."""


class VerificationError(ProveniqError):
    """A cryptographic check failed: `what` names it, `expected`/`found` carry the values."""

    code = "VERIFICATION_FAILED"
    status = 422

    def __init__(self, message: str, *, what: str = "", expected: str = "", found: str = ""):
        super().__init__(message)
        self.what = what
        self.expected = expected
        self.found = found

    def details(self) -> list[dict[str, Any]]:
        d: dict[str, Any] = {"check": self.what}
        if self.expected:
            d["expected"] = self.expected
        if self.found:
            d["found"] = self.found
        return [d]


class InclusionProofError(VerificationError):
    pass


class ConsistencyProofError(VerificationError):
    pass


class SignatureError(VerificationError):
    pass


class AuthRequired(ProveniqError):
    code = "AUTH_REQUIRED"
    status = 401


class AuthInvalid(ProveniqError):
    code = "AUTH_INVALID"
    status = 401


class Forbidden(ProveniqError):
    code = "FORBIDDEN"
    status = 403


class NotFound(ProveniqError):
    code = "NOT_FOUND"
    status = 404


class MethodNotAllowed(ProveniqError):
    code = "METHOD_NOT_ALLOWED"
    status = 405

    def __init__(self, message: str, *, allow: tuple[str, ...] = ()):
        super().__init__(message)
        self.allow = allow


class Conflict(ProveniqError):
    code = "CONFLICT"
    status = 409


class IdempotencyConflict(Conflict):
    code = "IDEMPOTENCY_CONFLICT"


class LifecycleConflict(Conflict):
    code = "INVALID_TRANSITION"


class PayloadTooLarge(ProveniqError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class RateLimited(ProveniqError):
    code = "RATE_LIMITED"
    status = 429

    def __init__(self, message: str, *, retry_after: int = 1, limit: int = 0, reset: int = 0):
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit
        self.reset = reset  # unix seconds when the bucket is full again


class Unavailable(ProveniqError):
    code = "UNAVAILABLE"
    status = 503
    transient = True


class InternalError(ProveniqError):
    code = "INTERNAL_ERROR"
    status = 500
