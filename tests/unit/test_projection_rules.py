"""firestore.rules and terraform/firestore.tf, checked structurally.

The official rules emulator (firebase-tools, Java) cannot run on these machines, so the rules
are not executed here: the text is checked against the RBAC matrix and the projection's
document kinds, and terraform is parsed with python-hcl2.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

from proveniq.access import rbac
from proveniq.adapters.gcp import firestore as firestore_sink
from proveniq.followers.projection import documents
from proveniq.ports import Principal

ROOT = Path(__file__).resolve().parents[2]
RULES = (ROOT / "firestore.rules").read_text()
TF = ROOT / "terraform" / "firestore.tf"


@cache
def tf() -> dict[str, Any]:
    opts = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    doc = hcl2.loads(TF.read_text(), serialization_options=opts)
    out: dict[str, Any] = {}
    for block in doc["resource"]:
        for type_, named in block.items():
            for name, body in named.items():
                out[f"{type_}.{name}"] = body
    return out


def one(body: dict[str, Any], key: str) -> Any:
    value = body[key]
    return value[0] if isinstance(value, list) else value


def listed(name: str) -> set[str]:
    m = re.search(rf"function {name}\(\) \{{\s*return [^\[]*\[([^\]]*)\]", RULES)
    assert m, f"function {name} not found"
    return set(re.findall(r"'([A-Z]+)'", m.group(1)))


def test_org_roles_that_read_are_the_matrix_asset_read_roles() -> None:
    assert listed("orgRoleReads") == set(rbac.PERMISSIONS["asset:read"])


def test_global_roles_that_read_are_those_rbac_grants_asset_read() -> None:
    granted = {
        role
        for role in ("ADMIN", "AUDITOR", "INVESTOR", "USER")
        if rbac.allowed(
            Principal(subject="x", tenant=None, org_role=None, global_role=role), "asset:read"
        )
    }
    assert listed("globalRoleReads") == granted == {"ADMIN", "AUDITOR"}


def test_reads_need_sign_in_and_the_same_org() -> None:
    body = re.search(r"function readsOrg\(org\) \{(.*?)\}", RULES, re.S)
    assert body
    text = " ".join(body.group(1).split())
    assert "signedIn()" in text
    assert "request.auth.token.get('org', '') == org" in text
    assert "(orgRoleReads() || globalRoleReads())" in text
    assert "return request.auth != null;" in RULES


def test_only_projection_documents_are_readable_and_nothing_is_writable() -> None:
    assert RULES.startswith("rules_version = '2';")
    allows = re.findall(r"allow ([a-z, ]+): if (.+?);", RULES)
    assert allows, "no allow statements"
    for ops, cond in allows:
        if {o.strip() for o in ops.split(",")} & {"write", "create", "update", "delete"}:
            assert cond.strip() == "false", f"a client may {ops}: {cond}"
    reads = [c for ops, c in allows if "get" in ops or "read" in ops]
    assert reads[-1].strip() == "false"  # the catch-all
    kinds = re.search(r"kind in \[([^\]]*)\] && readsOrg\(org\)", RULES)
    assert kinds and set(re.findall(r"'(\w+)'", kinds.group(1))) == set(documents.KINDS)
    assert "match /orgs/{org}/{kind}/{docId}" in RULES
    assert "match /{document=**}" in RULES


def test_terraform_releases_the_rules_file_for_the_default_database() -> None:
    ruleset = tf()["google_firebaserules_ruleset.firestore"]
    files = one(one(ruleset, "source"), "files")
    assert files["name"] == "firestore.rules"
    assert files["content"] == '${file("${path.module}/../firestore.rules")}'
    assert (TF.parent / ".." / "firestore.rules").resolve() == ROOT / "firestore.rules"
    release = tf()["google_firebaserules_release.firestore"]
    assert release["name"] == "cloud.firestore"
    assert "google_firebaserules_ruleset.firestore.name" in release["ruleset_name"]
    db = tf()["google_firestore_database.projection"]
    assert db["name"] == "(default)" and db["type"] == "FIRESTORE_NATIVE"


def test_terraform_indexes_the_seal_query_and_expires_markers() -> None:
    index = tf()["google_firestore_index.unsealed"]
    assert index["for_each"] == "${local.firestore_sealable}"
    fields = [f["field_path"] for f in index["fields"]]
    assert fields == ["sealed", "last_seq"]
    locals_ = hcl2.loads(
        TF.read_text(),
        serialization_options=SerializationOptions(strip_string_quotes=True, explicit_blocks=False),
    )["locals"][0]
    assert 'toset(["assets", "claims"])' in locals_["firestore_sealable"].replace("'", '"')
    assert set(documents.SEALABLE) == {"assets", "claims"}
    ttl = tf()["google_firestore_field.marker_ttl"]
    assert ttl["collection"] == firestore_sink.MARKERS and ttl["field"] == "expire_at"
    assert "ttl_config" in ttl
