"""FirebaseIdentity against the Firebase Auth emulator (firebase-tools), with real ID tokens.

Users are made and signed in through the emulator's identitytoolkit REST API; custom claims,
revocation and disabling go through firebase-admin, as an operator's tool would do it.
"""

from __future__ import annotations

import base64
import itertools
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import firebase_admin
import pytest
from firebase_admin import auth

from proveniq.adapters.gcp.firebase import FirebaseIdentity
from proveniq.errors import AuthInvalid, Unavailable
from proveniq.ports import Principal

_users = itertools.count(1)


class Emulator:
    """Test-side helpers over the emulator: sign-up and sign-in via REST, admin via SDK."""

    def __init__(self, emulator: Any, admin: firebase_admin.App) -> None:
        # emulator: conftest.AuthEmulator (host, project_id, base_url)
        self.emulator = emulator
        self.admin = admin

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(  # noqa: S310 - loopback http only
            f"{self.emulator.base_url}/identitytoolkit.googleapis.com/v1/{path}?key=fake-api-key",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback http only
            result: dict[str, Any] = json.load(r)
            return result

    def user(self, claims: dict[str, Any] | None = None) -> tuple[str, str]:
        """Sign a new user up, set its custom claims, sign in; returns (uid, ID token)."""
        email = f"user{next(_users)}-{time.monotonic_ns()}@example.com"
        uid = self._post("accounts:signUp", {"email": email, "password": "pw-123456"})["localId"]
        if claims is not None:
            auth.set_custom_user_claims(uid, claims, app=self.admin)
        token = self._post(
            "accounts:signInWithPassword",
            {"email": email, "password": "pw-123456", "returnSecureToken": True},
        )["idToken"]
        return uid, token

    def unsigned_token(self, uid: str, *, iat: float, exp: float, **claims: Any) -> str:
        """An emulator-style (alg "none") ID token with chosen times, as the emulator mints."""
        project = self.emulator.project_id
        header = {"alg": "none", "typ": "JWT"}
        payload = {
            "iss": f"https://securetoken.google.com/{project}",
            "aud": project,
            "auth_time": int(iat),
            "user_id": uid,
            "sub": uid,
            "iat": int(iat),
            "exp": int(exp),
            "firebase": {"identities": {}, "sign_in_provider": "password"},
            **claims,
        }
        return f"{_b64(header)}.{_b64(payload)}."


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.fixture
def emulator(firebase_auth_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", firebase_auth_emulator.host)
    admin = firebase_admin.initialize_app(
        options={"projectId": firebase_auth_emulator.project_id},
        name=f"test-admin-{next(_users)}",
    )
    yield Emulator(firebase_auth_emulator, admin)
    firebase_admin.delete_app(admin)


@pytest.fixture
def identity(emulator: Emulator) -> Iterator[FirebaseIdentity]:
    verifier = FirebaseIdentity(project_id=emulator.emulator.project_id)
    yield verifier
    verifier.close()


def reject(identity: FirebaseIdentity, token: str) -> str:
    with pytest.raises(AuthInvalid) as e:
        identity.verify(token)
    message = e.value.message
    assert token not in message
    return message


def test_valid_token_with_custom_claims_gives_the_principal(
    emulator: Emulator, identity: FirebaseIdentity
) -> None:
    uid, token = emulator.user({"org": "org-acme", "org_role": "ADMIN", "tier": "pro"})
    assert identity.verify(token) == Principal(
        subject=f"firebase:{uid}",
        tenant="org-acme",
        org_role="ADMIN",
        global_role="USER",
        tier="pro",
    )


def test_platform_role_without_org_is_platform_wide(
    emulator: Emulator, identity: FirebaseIdentity
) -> None:
    uid, token = emulator.user({"global_role": "AUDITOR"})
    assert identity.verify(token) == Principal(
        subject=f"firebase:{uid}", tenant=None, org_role=None, global_role="AUDITOR"
    )


def test_expired_token_is_rejected(emulator: Emulator, identity: FirebaseIdentity) -> None:
    uid, _ = emulator.user({"org": "o", "org_role": "MEMBER"})
    now = time.time()
    live = emulator.unsigned_token(uid, iat=now, exp=now + 3600, org="o", org_role="MEMBER")
    assert identity.verify(live).tenant == "o"  # the crafted token itself is acceptable
    expired = emulator.unsigned_token(
        uid, iat=now - 7200, exp=now - 3600, org="o", org_role="MEMBER"
    )
    assert "expired" in reject(identity, expired)


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.bm90IGpzb24.",  # payload is not JSON
        "eyJhbGciOiJub25lIn0.WzEsMl0.",  # payload is a JSON array
        "@@@.eyJzdWIiOiJ4In0.",  # header is not base64
    ],
)
def test_malformed_token_is_rejected(identity: FirebaseIdentity, token: str) -> None:
    message = reject(identity, token)
    assert "malformed" in message or "invalid" in message


def test_empty_token_is_rejected(identity: FirebaseIdentity) -> None:
    with pytest.raises(AuthInvalid, match="missing"):
        identity.verify("")


def test_token_of_another_project_is_rejected(emulator: Emulator) -> None:
    _, token = emulator.user({"org": "o", "org_role": "OWNER"})
    other = FirebaseIdentity(project_id="demo-other-project")
    try:
        message = reject(other, token)
    finally:
        other.close()
    assert "audience" in message and "demo-other-project" in message


def test_revoked_token_is_rejected(emulator: Emulator, identity: FirebaseIdentity) -> None:
    uid, token = emulator.user({"org": "o", "org_role": "VIEWER"})
    assert identity.verify(token).org_role == "VIEWER"
    # Revocation has one-second resolution: revoke in a later second than the token's iat.
    time.sleep(1.05 - time.time() % 1)
    auth.revoke_refresh_tokens(uid, app=emulator.admin)
    assert "revoked" in reject(identity, token)


def test_disabled_or_deleted_user_is_rejected(
    emulator: Emulator, identity: FirebaseIdentity
) -> None:
    uid, token = emulator.user({"org": "o", "org_role": "MEMBER"})
    auth.update_user(uid, disabled=True, app=emulator.admin)
    assert "disabled" in reject(identity, token)
    auth.delete_user(uid, app=emulator.admin)
    assert "not found" in reject(identity, token)


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        (None, "org"),
        ({"org_role": "ADMIN"}, "org"),
        ({"org": "", "org_role": "ADMIN"}, "org"),
        ({"org": "o"}, "org_role"),
        ({"org": "o", "org_role": "KING"}, "org_role"),
        ({"org": "o", "org_role": "ADMIN", "global_role": "ROOT"}, "global_role"),
        ({"org": "o", "org_role": "ADMIN", "tier": 3}, "tier"),
    ],
)
def test_missing_or_invalid_claims_are_rejected(
    emulator: Emulator, identity: FirebaseIdentity, claims: dict[str, Any] | None, why: str
) -> None:
    _, token = emulator.user(claims)
    assert why in reject(identity, token)


def test_unreachable_auth_backend_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", f"127.0.0.1:{port}")
    project = "demo-unreachable"
    now = time.time()
    payload = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "sub": "u1",
        "iat": int(now),
        "exp": int(now) + 600,
        "org": "o",
        "org_role": "ADMIN",
    }
    token = f"{_b64({'alg': 'none'})}.{_b64(payload)}."
    identity = FirebaseIdentity(project_id=project, http_timeout=2.0)
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable) as e:
            identity.verify(token)  # check_revoked needs the user record: the backend is down
    finally:
        identity.close()
    assert token not in e.value.message
    assert time.monotonic() - started < 10
