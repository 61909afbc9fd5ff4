"""deploy/prometheus and deploy/grafana: the alert rules load in Prometheus and fire when they
should (promtool, from Debian's prometheus package), and the dashboard and the rules ask only
for series the services export."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from services.api import middleware
from services.infra import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "deployx-alerts.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "deployx-alerts.test.yaml"
DASHBOARD = DEPLOY / "grafana" / "deployx-dashboard.json"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, check=False, cwd=RULES.parent
    )


def sample_names(module: object) -> set[str]:
    """The sample names the module's metrics expose (a counter's _total, a histogram's
    _bucket, _sum and _count)."""
    names = set()
    for value in vars(module).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                suffixes = {
                    "counter": ["_total"],
                    "histogram": ["_bucket", "_sum", "_count"],
                }.get(family.type, [""])
                names |= {family.name + suffix for suffix in suffixes}
    return names


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def rule_queries() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_the_alert_rules_load_and_fire_when_they_should() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert is exercised by the tests file, at least once firing.
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert fired == alerts


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each query as a recording rule, which promtool parses ($__rate_interval is Grafana's)."""
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr.replace("$__rate_interval", "5m")}
        for n, expr in enumerate(dashboard_queries())
    ]
    (tmp_path / "dashboard.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    checked = promtool("check", "rules", str(tmp_path / "dashboard.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_and_rules_ask_for_what_the_services_export() -> None:
    exported = sample_names(metrics) | sample_names(middleware)
    asked = {
        name
        for query in dashboard_queries() + rule_queries()
        for name in re.findall(r"\bdeployx_[a-z_]+", query)
    }
    assert asked <= exported, asked - exported
    # And the dashboard shows every series of services/infra/metrics.py.
    shown = {
        name for query in dashboard_queries() for name in re.findall(r"\bdeployx_[a-z_]+", query)
    }
    assert sample_names(metrics) <= shown, sample_names(metrics) - shown


def test_the_dashboard_panels_have_their_own_place_and_data_source() -> None:
    board = dashboard()
    panels = board["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    boxes: list[tuple[int, int, int, int]] = []
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24, panel["title"]
        box = (place["x"], place["y"], place["x"] + place["w"], place["y"] + place["h"])
        for other in boxes:
            overlap = box[0] < other[2] and other[0] < box[2] and box[1] < other[3]
            assert not (overlap and other[1] < box[3]), panel["title"]
        boxes.append(box)
