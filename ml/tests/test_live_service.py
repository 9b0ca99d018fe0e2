"""A running `prognos run`, from outside: `/metrics` parsed with the Prometheus
project's own text-format parser (prometheus_client) and checked against the
README's metric table and the Grafana dashboard in k8s/, so neither can name a
metric the service does not expose; the health routes; org configuration changes
applied live (thresholds) and at the next start (everything else)."""

import contextlib
import json
import os
import pathlib
import re
import subprocess
import threading
import time
import urllib.request

import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = pathlib.Path(__file__).resolve().parents[2]
PASSWORD = "metrics test password"
NAME = re.compile(r"\b((?:prognos|process)_[a-z0-9_]+)\b")


def _get(url: str, token: str | None = None) -> bytes:
    req = urllib.request.Request(url)
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _sample(families: dict, name: str, **labels) -> float:
    for f in families.values():
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {name}{labels}")


@contextlib.contextmanager
def _running(prognos_bin, example_config, data):
    """`prognos run` on port 0, sped up, on `data`; yields its base URL; stops it."""
    env = dict(
        os.environ,
        PROGNOS_ADMIN_PASSWORD=PASSWORD,
        PROGNOS_SIMULATOR__MACHINES_PER_ORG="2",
        RUST_LOG="info",
    )
    proc = subprocess.Popen(
        [str(prognos_bin), "run", "--config", str(example_config), "--listen", "127.0.0.1:0",
         "--data-dir", str(data), "--speed", "600", "--no-first-models"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    log: list[str] = []
    found = threading.Event()
    addr: list[str] = []

    def drain():
        for line in proc.stderr:
            log.append(line)
            m = re.search(r"API listening on (http://\S+)", line)
            if m and not addr:
                addr.append(m.group(1))
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        if not found.wait(120):
            pytest.fail("prognos run did not start:\n" + "".join(log))
        yield addr[0]
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=60) == 0, "".join(log)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("prognos run did not stop on SIGTERM:\n" + "".join(log))


@pytest.fixture(scope="module")
def service(prognos_bin, example_config, tmp_path_factory):
    """`prognos run` on a fresh data dir; its base URL."""
    with _running(prognos_bin, example_config, tmp_path_factory.mktemp("data")) as url:
        yield url


def _token(service: str) -> str:
    body = json.dumps({"username": "admin", "password": PASSWORD}).encode()
    req = urllib.request.Request(f"{service}/api/auth/login", data=body,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["token"]


def _send(method: str, url: str, token: str, body) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                 headers={"content-type": "application/json",
                                          "authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def scrape(service) -> str:
    """The exposition once rows have gone through features and inference."""
    deadline = time.monotonic() + 180
    while True:
        text = _get(f"{service}/metrics").decode()
        fams = _families(text)
        try:
            featured = _sample(fams, "prognos_rows_total", outcome="featured")
            timed = _sample(fams, "prognos_features_duration_seconds_count")
        except AssertionError:
            featured = timed = 0
        if featured > 0 and timed > 0:
            return text
        if time.monotonic() > deadline:
            pytest.fail("no featured rows within 180 s:\n" + text)
        time.sleep(1)


def test_exposition_parses_with_the_prometheus_parser(scrape):
    fams = _families(scrape)
    for name, f in fams.items():
        assert f.type in {"counter", "gauge", "histogram"}, (name, f.type)
        assert f.documentation, f"{name} has no HELP"
        assert name.startswith(("prognos_", "process_")), name
    # Histograms: cumulative buckets ending in +Inf equal to _count, per label set.
    for name in ["prognos_features_duration_seconds", "prognos_features_batch_rows",
                 "prognos_inference_duration_seconds", "prognos_inference_batch_rows",
                 "prognos_http_request_duration_seconds"]:
        f = fams[name]
        assert f.type == "histogram", name
        series: dict = {}
        for s in f.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(key, {"buckets": [], "count": None})
            if s.name.endswith("_bucket"):
                series[key]["buckets"].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                series[key]["count"] = s.value
        assert series, name
        for key, v in series.items():
            b = sorted(v["buckets"])
            assert b[-1][0] == float("inf") and b[-1][1] == v["count"], (name, key)
            assert all(x[1] <= y[1] for x, y in zip(b, b[1:])), (name, key, b)
    # Real values from the process.
    assert _sample(fams, "process_resident_memory_bytes") > 10 * 2**20
    assert _sample(fams, "process_cpu_seconds_total") > 0
    assert _sample(fams, "prognos_features_batch_rows_sum") >= 1
    assert _sample(fams, "prognos_rows_total", outcome="fallback") > 0, "no model: rules only"
    orgs = {s.labels["org"] for s in fams["prognos_inference_batch_rows"].samples}
    assert orgs == {"acme-heat", "borealis-forge", "cobalt-thermal"}


def test_readme_documents_every_exposed_metric_and_nothing_else(scrape):
    exposed = {f.name for f in text_string_to_metric_families(scrape)}
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Metrics", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            documented |= set(NAME.findall(line.split("|")[1]))
    # The parser names counter families without `_total`.
    documented = {n[: -len("_total")] if n.endswith("_total") else n for n in documented}
    assert documented == exposed, (
        f"undocumented: {sorted(exposed - documented)}; not exposed: {sorted(documented - exposed)}")


def _selectors(expr) -> set[str]:
    """Metric names of every vector selector in a parsed PromQL expression."""
    if isinstance(expr, promql_parser.VectorSelector):
        return {expr.name} if expr.name else set()
    if isinstance(expr, promql_parser.MatrixSelector):
        return _selectors(expr.vector_selector)
    if isinstance(expr, promql_parser.Call):
        return set().union(*(_selectors(a) for a in expr.args))
    if isinstance(expr, promql_parser.BinaryExpr):
        return _selectors(expr.lhs) | _selectors(expr.rhs)
    if isinstance(expr, (promql_parser.AggregateExpr, promql_parser.ParenExpr,
                         promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
        return _selectors(expr.expr)
    return set()


def _grafana_promql(expr: str) -> str:
    """A panel expression with Grafana's variables as Prometheus would get them."""
    return expr.replace("$__rate_interval", "2m").replace("$org", ".*")


def test_grafana_dashboard_names_only_exposed_metrics(scrape):
    samples = {s.name for f in text_string_to_metric_families(scrape) for s in f.samples}
    dash = json.loads((ROOT / "k8s/grafana-dashboard.json").read_text())
    used = set()
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        for t in p["targets"]:
            # A PromQL parser reads every expression (a syntax error fails here).
            names = _selectors(promql_parser.parse(_grafana_promql(t["expr"])))
            assert names, (p["title"], t["expr"])
            assert names == set(NAME.findall(t["expr"])), (p["title"], t["expr"])
            used |= names
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            used |= set(NAME.findall(v["definition"]))
    missing = sorted(used - samples)
    assert not missing, f"the dashboard queries series /metrics does not have: {missing}"
    # It charts what the issue asks for.
    for want in ["prognos_rows_total", "prognos_alerts_total", "prognos_alerts_suppressed_total",
                 "prognos_inference_duration_seconds_bucket", "prognos_features_duration_seconds_bucket",
                 "prognos_inference_batch_rows_bucket", "prognos_model_cache_hits_total",
                 "prognos_model_cache_misses_total", "prognos_model_load_seconds_total",
                 "prognos_ws_clients", "prognos_training_runs_total",
                 "process_resident_memory_bytes"]:
        assert want in used, want


def test_health_routes_report_the_live_pipeline(service, scrape):
    token = _token(service)
    mon = json.loads(_get(f"{service}/api/health/background-monitor", token))
    assert mon["status"] == "healthy", mon
    assert mon["pipeline"]["running"] is True
    assert {o["organizationId"] for o in mon["organizations"]} == {
        "acme-heat", "borealis-forge", "cobalt-thermal"}
    assert all(o["rowsFeatured"] > 0 and not o["stalled"] for o in mon["organizations"]), mon
    pred = json.loads(_get(f"{service}/api/health/prediction-service", token))
    assert pred["status"] == "degraded", "no models yet: every org on rules"
    assert sorted(pred["fallbackOrganizations"]) == ["acme-heat", "borealis-forge", "cobalt-thermal"]
    assert all(o["rowsFallback"] > 0 and o["mode"] == "rules" for o in pred["organizations"])
    cache = json.loads(_get(f"{service}/api/health/model-cache", token))
    assert cache["status"] == "healthy" and cache["totals"]["models"] == 0, cache
    train = json.loads(_get(f"{service}/api/health/training-service", token))
    assert train["trainerAvailable"] is True and train["status"] == "healthy", train


def test_threshold_change_applies_live_after_the_rows_already_scored(service, scrape):
    """PUT /api/orgs/{org} on the running service: the new threshold takes effect
    from an event time beyond the rows already scored (the simulator runs event
    time ahead of the wall clock, so that is later than the request)."""
    token = _token(service)
    org = json.loads(_get(f"{service}/api/orgs/acme-heat", token))
    assert org["running"] is True and org["source"] == "file"
    config = org["config"]
    config["prediction"]["failure_threshold"] = 0.75
    wall_ms = time.time() * 1000
    change = _send("PUT", f"{service}/api/orgs/acme-heat", token, config)
    assert change["restartKeys"] == [] and change["pendingRestart"] is False, change
    assert change["appliedLive"]["thresholds"]["failureThreshold"] == 0.75
    effective = change["appliedLive"]["effectiveTs"]
    assert effective > wall_ms + 60_000, "from the scored rows' frontier, not the wall clock"
    # ... an event time the source really reaches (its metric is published twice a second).
    deadline = time.monotonic() + 60
    while _sample(_families(_get(f"{service}/metrics").decode()),
                  "prognos_source_event_time_ms", org="acme-heat") < effective:
        assert time.monotonic() < deadline, effective
        time.sleep(0.2)
    assert json.loads(_get(f"{service}/api/orgs/acme-heat", token))["source"] == "api"


def test_stored_org_configurations_apply_at_the_next_start(prognos_bin, example_config, tmp_path):
    """A new org and a renamed one, stored through the API, are what the next
    `prognos run` on the same data dir processes."""
    data = tmp_path / "data"
    with _running(prognos_bin, example_config, data) as url:
        token = _token(url)
        cobalt = json.loads(_get(f"{url}/api/orgs/cobalt-thermal", token))["config"]
        cobalt["name"] = "Cobalt Thermal (renamed)"
        change = _send("PUT", f"{url}/api/orgs/cobalt-thermal", token, cobalt)
        assert change["restartKeys"] == ["name"] and change["pendingRestart"] is True, change
        created = _send("POST", f"{url}/api/orgs", token,
                        {"id": "delta-heat", "config": dict(cobalt, name="Delta Heat")})
        assert created["organization"]["running"] is False
        mon = json.loads(_get(f"{url}/api/health/background-monitor", token))
        assert "delta-heat" not in {o["organizationId"] for o in mon["organizations"]}
    with _running(prognos_bin, example_config, data) as url:
        token = _token(url)
        orgs = {o["id"]: o for o in json.loads(_get(f"{url}/api/orgs", token))["organizations"]}
        assert orgs["delta-heat"]["running"] is True and orgs["delta-heat"]["source"] == "api"
        assert orgs["cobalt-thermal"]["name"] == "Cobalt Thermal (renamed)"
        assert orgs["acme-heat"]["source"] == "file"
        deadline = time.monotonic() + 120
        while True:
            mon = json.loads(_get(f"{url}/api/health/background-monitor?org=delta-heat", token))
            if mon["organizations"][0]["rowsFeatured"] > 0:
                break
            assert time.monotonic() < deadline, mon
            time.sleep(0.5)
