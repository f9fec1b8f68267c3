"""terraform/monitoring.tf and dashboard.json, checked structurally (python-hcl2), against the
Core manual's alert rules, the reference architecture's SLOs, the metric lines
`proveniq.app.metrics` writes, the seal's ALERT line and the runbook's headings."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

from proveniq.app import metrics

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
MONITORING = TERRAFORM / "monitoring.tf"
RUNBOOK = ROOT / "docs" / "OPERATIONS.md"
SEAL_SOURCE = ROOT / "shared" / "proveniq" / "ledger" / "integration.py"
OPTS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


@cache
def parsed(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = hcl2.loads(path.read_text(), serialization_options=OPTS)
    return doc


def resources(path: Path = MONITORING) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for block in parsed(path).get("resource", []):
        for type_, named in block.items():
            for name, body in named.items():
                out[f"{type_}.{name}"] = body
    return out


def local(name: str) -> Any:
    for block in parsed(MONITORING)["locals"]:
        if name in block:
            return block[name]
    raise KeyError(name)


def functions() -> dict[str, Any]:
    for block in parsed(TERRAFORM / "main.tf")["locals"]:
        if "functions" in block:
            return dict(block["functions"])
    raise KeyError("functions")


def policy(name: str) -> dict[str, Any]:
    return resources()[f"google_monitoring_alert_policy.{name}"]


def conditions(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(body.get("conditions", []))


def threshold(cond: dict[str, Any]) -> dict[str, Any]:
    value = cond["condition_threshold"]
    body: dict[str, Any] = value[0] if isinstance(value, list) else value
    return body


def unquote(s: str) -> str:
    return s.replace('\\"', '"')


def test_core_manual_error_rate_rules() -> None:
    p = policy("error_rate")
    assert p["for_each"]["critical"] == {
        "severity": "CRITICAL",
        "ratio": 0.05,
        "duration": "300s",
        "label": "> 5 % for 5 min",
    }
    assert p["for_each"]["warning"]["ratio"] == 0.01
    assert p["for_each"]["warning"]["duration"] == "900s"
    assert p["for_each"]["warning"]["severity"] == "WARNING"
    t = threshold(conditions(p)[0])
    assert t["filter"] == "${local.requests_5xx}" and t["denominator_filter"] == "${local.requests}"
    assert (
        t["threshold_value"] == "${each.value.ratio}" and t["duration"] == "${each.value.duration}"
    )
    assert 'response_code_class = "5xx"' in unquote(local("requests_5xx"))


def test_core_manual_latency_rules() -> None:
    p = policy("latency_p99")
    assert (p["for_each"]["critical"]["ms"], p["for_each"]["critical"]["duration"]) == (
        5000,
        "300s",
    )
    assert (p["for_each"]["warning"]["ms"], p["for_each"]["warning"]["duration"]) == (2000, "900s")
    agg = threshold(conditions(p)[0])["aggregations"][0]
    assert agg["cross_series_reducer"] == "REDUCE_PERCENTILE_99"
    assert "run.googleapis.com/request_latencies" in unquote(local("latencies"))


def test_api_filters_name_the_gateway_functions() -> None:
    names = sorted(f["name"] for f in functions().values() if f["gateway"])
    assert local("api_services") == "${sort([for dir, f in local.functions : f.name if f.gateway])}"
    dashboard = json.loads((TERRAFORM / "dashboard.json").read_text())
    text = json.dumps(dashboard)
    expected = ",".join(f'\\"{n}\\"' for n in names)
    assert f"service_name=one_of({expected})" in text
    assert '\\"write-event\\"' in text and '\\"get-proof\\"' in text
    assert functions()["write_event"]["name"] == "write-event"
    assert functions()["get_proof"]["name"] == "get-proof"


def test_database_connection_failures_page() -> None:
    p = policy("database")
    assert (
        p["severity"] == "CRITICAL" and p["notification_channels"] == "${var.alert_page_channels}"
    )
    filters = [unquote(threshold(c)["filter"]) for c in conditions(p)]
    assert any("proveniq_db_connection_failures" in f for f in filters)
    assert any("cloudsql.googleapis.com/database/up" in f for f in filters)


def test_ledger_alarms() -> None:
    stale = conditions(policy("checkpoint_stale"))
    assert threshold(stale[0])["threshold_value"] == 300
    assert "proveniq_seal_lag_seconds" in threshold(stale[0])["filter"]
    absent = stale[1]["condition_absent"]
    absent = absent[0] if isinstance(absent, list) else absent
    assert absent["duration"] == "300s"
    refused = threshold(conditions(policy("seal_refused"))[0])
    assert "proveniq_seal_refused" in refused["filter"] and refused["threshold_value"] == 0
    backlog = conditions(policy("outbox_backlog"))
    assert threshold(backlog[0])["threshold_value"] == "${var.outbox_backlog_threshold}"
    assert threshold(backlog[1])["threshold_value"] == 1000  # Core manual: queue depth > 1000
    dead = policy("dead_letters")
    assert "proveniq_webhook_dead_letters" in threshold(conditions(dead)[0])["filter"]
    assert (
        dead["dynamic"][0]["conditions"]["for_each"] == "${google_pubsub_subscription.dead_letter}"
    )
    assert policy("sql_disk")["conditions"][0]["condition_threshold"][0]["threshold_value"] == 0.8


def test_seal_refused_metric_matches_the_seals_alert_line() -> None:
    line = re.search(
        r'"(ALERT: refusing to publish an inconsistent checkpoint)', SEAL_SOURCE.read_text()
    )
    assert line, "the seal no longer logs its ALERT line"
    f = unquote(local("log_counters")["proveniq_seal_refused"]["filter"])
    assert f == f'jsonPayload.message =~ "^{line.group(1)}"'


def test_log_metrics_read_the_lines_metrics_writes() -> None:
    names = set()
    for spec in local("log_counters").values():
        names |= set(re.findall(r'jsonPayload.metric = "([a-z_]+)"', unquote(spec["filter"])))
    names |= {spec["metric"] for spec in local("log_values").values()}
    assert names <= set(metrics.LOGGED)
    assert set(metrics.LOGGED) - names <= {"seal_refused"}  # read from the ALERT line instead
    assert unquote(local("metric_line")) == 'jsonPayload.logger = "proveniq.metrics"'
    value = resources()["google_logging_metric.value"]
    assert value["value_extractor"] == "EXTRACT(jsonPayload.value)"
    assert value["metric_descriptor"][0]["value_type"] == "DISTRIBUTION"


def test_every_referenced_log_metric_exists() -> None:
    text = MONITORING.read_text() + (TERRAFORM / "dashboard.json").read_text()
    defined = set(local("log_counters")) | set(local("log_values"))
    used = set(re.findall(r'google_logging_metric\.(?:counter|value)\["(\w+)"\]', text))
    used |= set(re.findall(r"logging\.googleapis\.com/user/(\w+)", text))
    assert used and used <= defined


def test_slos_of_the_reference_architecture() -> None:
    r = resources()
    avail = r["google_monitoring_slo.availability"]
    assert avail["goal"] == 0.999
    ratio = avail["request_based_sli"][0]["good_total_ratio"][0]
    assert ratio["bad_service_filter"] == "${local.requests_5xx}"
    write = r["google_monitoring_slo.write_latency"]
    proof = r["google_monitoring_slo.proof_latency"]
    for slo, ms, fn in ((write, 500, "write_event"), (proof, 200, "get_proof")):
        cut = slo["request_based_sli"][0]["distribution_cut"][0]
        assert cut["range"][0]["max"] == ms and slo["goal"] == 0.99
        which = "write_latency" if fn == "write_event" else "proof_latency"
        assert cut["distribution_filter"] == f"${{local.{which}}}"
        assert f"local.functions.{fn}.name" in local(which)
    error_slo = threshold(conditions(policy("slo"))[0])
    assert error_slo["threshold_value"] == 0.001 and error_slo["duration"] == "3600s"


def _anchors(markdown: str) -> set[str]:
    out = set()
    for heading in re.findall(r"^#{2,4} (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_every_policy_links_a_runbook_section() -> None:
    anchors = _anchors(RUNBOOK.read_text())
    policies = {
        k: v for k, v in resources().items() if k.startswith("google_monitoring_alert_policy.")
    }
    assert len(policies) >= 9
    for name, body in policies.items():
        content = body["documentation"][0]["content"]
        m = re.fullmatch(r"Runbook: docs/OPERATIONS.md#([\w-]+)", content)
        assert m and m.group(1) in anchors, f"{name}: {content}"


def test_new_variables_have_defaults_and_every_variable_is_declared() -> None:
    declared: dict[str, dict[str, Any]] = {}
    for path in TERRAFORM.glob("*.tf"):
        for block in parsed(path).get("variable", []):
            declared.update(block)
    for path in (MONITORING, TERRAFORM / "firestore.tf"):
        for block in parsed(path).get("variable", []):
            for name, body in block.items():
                assert "default" in body, f"{name} needs a default"
        used = set(re.findall(r"var\.(\w+)", path.read_text()))
        assert used <= set(declared), used - set(declared)


def test_dashboard_is_a_mosaic_of_the_figures() -> None:
    dash = json.loads((TERRAFORM / "dashboard.json").read_text())
    tiles = dash["mosaicLayout"]["tiles"]
    titles = " ".join(t["widget"]["title"] for t in tiles).lower()
    for figure in (
        "error ratio",
        "p99",
        "checkpoint",
        "seal lag",
        "outbox",
        "dead letters",
        "device",
        "risk reviews",
    ):
        assert figure in titles
    assert all(t["xPos"] + t["width"] <= dash["mosaicLayout"]["columns"] for t in tiles)
    board = resources()["google_monitoring_dashboard.ledger"]
    assert board["dashboard_json"] == '${file("${path.module}/dashboard.json")}'
