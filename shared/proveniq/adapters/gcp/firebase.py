"""`ports.IdentityVerifier` over Firebase Authentication ID tokens.

Tokens are verified by ``firebase_admin.auth.verify_id_token(..., check_revoked=True)`` on a
named Firebase app built on first use for one project (Application Default Credentials). With
``FIREBASE_AUTH_EMULATOR_HOST`` set, firebase-admin talks to the Auth emulator, whose tokens are
unsigned; it then skips the signature and expiry checks, so `exp` and `iat` are checked here too.

Custom claims give the principal:

    org          organization (tenant) id          required for app users (global_role USER)
    org_role     OWNER | ADMIN | MEMBER | VIEWER    required with org
    global_role  ADMIN | AUDITOR | INVESTOR | USER  optional, default USER; platform roles may
                                                    have no org (tenant None)
    tier         plan tier                          optional, default "free"

Every rejection is `errors.AuthInvalid` with a reason; the token itself never appears in a
message or a log. Firebase transport or certificate-fetch failures are `errors.Unavailable`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import threading
import time
from typing import Any, cast, get_args

import firebase_admin
from firebase_admin import auth as firebase_auth
from firebase_admin import exceptions as firebase_exceptions

from proveniq.errors import AuthInvalid, Unavailable
from proveniq.ports import GlobalRole, OrgRole, Principal

_GLOBAL_ROLES: tuple[str, ...] = get_args(GlobalRole)
_ORG_ROLES: tuple[str, ...] = get_args(OrgRole)
_CLOCK_SKEW_SECONDS = 5
_app_names = itertools.count(1)


class FirebaseIdentity:
    def __init__(self, *, project_id: str, http_timeout: float = 10.0) -> None:
        if not project_id:
            raise ValueError("project_id is required")
        self._project_id = project_id
        self._http_timeout = http_timeout
        self._app: firebase_admin.App | None = None
        self._lock = threading.Lock()

    def verify(self, id_token: str) -> Principal:
        if not isinstance(id_token, str) or not id_token:
            raise AuthInvalid("missing ID token")
        # Malformed or expired tokens stop here with our own message (the emulator's unsigned
        # tokens get no expiry check from firebase-admin); acceptance still needs firebase-admin.
        claims = _unverified_claims(id_token)
        _check_times(claims)
        try:
            verified = firebase_auth.verify_id_token(
                id_token, app=self._get_app(), check_revoked=True
            )
        except firebase_auth.ExpiredIdTokenError as e:
            raise AuthInvalid("ID token expired") from e
        except firebase_auth.RevokedIdTokenError as e:
            raise AuthInvalid("ID token revoked") from e
        except firebase_auth.UserDisabledError as e:
            raise AuthInvalid("user disabled") from e
        except firebase_auth.UserNotFoundError as e:
            raise AuthInvalid("user not found") from e
        except firebase_auth.InvalidIdTokenError:
            # Decoding errors may quote token segments: say why without chaining them.
            raise AuthInvalid(self._why_invalid(claims)) from None
        except firebase_auth.CertificateFetchError as e:
            raise Unavailable("Firebase public keys could not be fetched") from e
        except ValueError:
            # firebase-admin's ValueError messages quote the token: do not chain it.
            raise AuthInvalid("malformed ID token") from None
        except firebase_exceptions.FirebaseError as e:
            raise Unavailable(f"Firebase Auth unavailable ({e.code})") from e
        return _principal(cast(dict[str, Any], verified))

    def close(self) -> None:
        """Delete the Firebase app this verifier made, if any."""
        with self._lock:
            app, self._app = self._app, None
        if app is not None:
            firebase_admin.delete_app(app)

    def _why_invalid(self, claims: dict[str, Any]) -> str:
        if claims.get("aud") != self._project_id:
            return f"ID token audience {str(claims.get('aud'))[:64]!r} is not {self._project_id!r}"
        if claims.get("iss") != f"https://securetoken.google.com/{self._project_id}":
            return "ID token issuer is not this project's"
        return "ID token signature or claims invalid"

    def _get_app(self) -> firebase_admin.App:
        with self._lock:
            if self._app is None:
                self._app = firebase_admin.initialize_app(
                    options={"projectId": self._project_id, "httpTimeout": self._http_timeout},
                    name=f"proveniq-identity-{self._project_id}-{next(_app_names)}",
                )
            return self._app


def _unverified_claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthInvalid("malformed ID token: not a JWT")
    _json_segment(parts[0], "header")
    return _json_segment(parts[1], "payload")


def _json_segment(segment: str, name: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as e:
        raise AuthInvalid(f"malformed ID token: {name} is not base64url JSON") from e
    if not isinstance(value, dict):
        raise AuthInvalid(f"malformed ID token: {name} is not a JSON object")
    return value


def _check_times(claims: dict[str, Any]) -> None:
    now = time.time()
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise AuthInvalid("ID token has no exp claim")
    if exp <= now - _CLOCK_SKEW_SECONDS:
        raise AuthInvalid("ID token expired")
    if not isinstance(iat, int | float) or isinstance(iat, bool) or iat > now + _CLOCK_SKEW_SECONDS:
        raise AuthInvalid("ID token iat claim missing or in the future")


def _principal(claims: dict[str, Any]) -> Principal:
    _check_times(claims)
    uid = claims.get("uid") or claims.get("sub")
    if not isinstance(uid, str) or not uid:
        raise AuthInvalid("ID token has no subject")

    global_role = claims.get("global_role", "USER")
    if global_role not in _GLOBAL_ROLES:
        raise AuthInvalid(f"claim global_role must be one of {', '.join(_GLOBAL_ROLES)}")
    org, org_role = claims.get("org"), claims.get("org_role")
    if org is None and org_role is None and global_role != "USER":
        tenant: str | None = None  # a platform-wide principal
    else:
        if not isinstance(org, str) or not org:
            raise AuthInvalid("claim org missing or not a non-empty string")
        if org_role not in _ORG_ROLES:
            raise AuthInvalid(f"claim org_role must be one of {', '.join(_ORG_ROLES)}")
        tenant = org
    tier = claims.get("tier", "free")
    if not isinstance(tier, str) or not tier:
        raise AuthInvalid("claim tier must be a non-empty string")
    return Principal(
        subject=f"firebase:{uid}",
        tenant=tenant,
        org_role=cast(OrgRole | None, org_role),
        global_role=cast(GlobalRole, global_role),
        tier=tier,
    )
