"""The guides in docs/ stay true.

- Every fenced block marked ```sh test``` runs, in order, per guide, in a fresh
  directory (with `config/`, `tests/` and `ml/` of the checkout linked into it and
  `prognos` on PATH), each within a timeout, and must exit 0; a ```sh test-fails```
  block must exit non-zero (a guide showing a refusal). A block using curl or jq is
  skipped, with the reason, on a machine without them.
- Every `prognos …` command a guide names (in code blocks and inline code) uses only
  flags its `--help` lists.
- Every route a guide names is in the OpenAPI document; every metric, log line and
  `PROGNOS_*` variable it names exists in the source; every configuration override
  written as `PROGNOS_A__B=value` passes `prognos check --config-only`.
- Every relative link (and its #anchor) resolves.
- docs/api.md is what scripts/api-reference.py renders from a live service's
  /api/openapi.json.
"""

import contextlib
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GUIDES = sorted(p for p in DOCS.glob("*.md") if p.name != "api.md")
BLOCK_TIMEOUT_S = 180
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\s*$", re.S | re.M)
SOURCES = [ROOT / d for d in ("src", "dataflows/src", "connectors/src")]


def _source_text() -> str:
    parts = []
    for d in SOURCES:
        parts.extend(p.read_text() for p in sorted(d.rglob("*.rs")))
    for p in sorted((ROOT / "ml").glob("*.py")) + sorted((ROOT / "ml/prognos_ml").glob("*.py")):
        parts.append(p.read_text())
    return "\n".join(parts)


SOURCE = _source_text()


def _blocks(path: pathlib.Path) -> list[tuple[str, str, int]]:
    """(info string, body, line) of every fenced block."""
    text = path.read_text()
    return [(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1)
            for m in FENCE.finditer(text)]


def _runnable(path: pathlib.Path) -> list[tuple[str, str, int]]:
    return [(info, body, line) for info, body, line in _blocks(path)
            if info.split()[:2] in (["sh", "test"], ["sh", "test-fails"])]


def test_guides_exist():
    names = {p.name for p in DOCS.glob("*.md")}
    for want in ("README.md", "deployment.md", "onboarding.md", "operator.md", "admin.md",
                 "troubleshooting.md", "tuning.md", "security.md", "api.md"):
        assert want in names, f"docs/{want} is missing"
    assert sum(len(_runnable(g)) for g in GUIDES) >= 5, "the guides have almost no runnable block"


# --- runnable blocks ---------------------------------------------------------------

def _workdir(tmp: pathlib.Path, prognos_bin: pathlib.Path) -> dict:
    for name in ("config", "tests", "ml", "scripts"):
        (tmp / name).symlink_to(ROOT / name)
    bindir = tmp / ".bin"
    bindir.mkdir()
    (bindir / "prognos").symlink_to(prognos_bin.resolve())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PROGNOS_") and k not in ("RUST_LOG", "ORT_DYLIB_PATH")}
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PROGNOS_BIN"] = str(prognos_bin)
    env["NO_COLOR"] = "1"
    env["RUST_BACKTRACE"] = "0"
    return env


@pytest.mark.parametrize("guide", [g for g in GUIDES if _runnable(g)], ids=lambda p: p.name)
def test_runnable_blocks(guide, prognos_bin, tmp_path):
    env = _workdir(tmp_path, prognos_bin)
    saved = tmp_path / ".env.sh"
    for info, body, line in _runnable(guide):
        # The API walk-throughs use curl and jq as an operator would; a machine with
        # only the toolchains may lack them: say so rather than fail there.
        missing = [t for t in ("curl", "jq") if re.search(rf"\b{t}\b", body) and not shutil.which(t)]
        if missing:
            pytest.skip(f"{guide.name}:{line} needs {' and '.join(missing)} (apt-get install curl jq)")
        expect_failure = info.split()[1] == "test-fails"
        script = ("set -euo pipefail\n"
                  f"[ -f {saved} ] && source {saved}\n"
                  f"{body}\n"
                  f"export -p > {saved}\n")
        if expect_failure:
            # the failing command is the block's last; keep the environment it had
            script = f"set -uo pipefail\n[ -f {saved} ] && source {saved}\n{body}\n"
        started = time.monotonic()
        try:
            proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"{guide.name}:{line}: block did not finish in {BLOCK_TIMEOUT_S} s\n"
                        f"{body}\nstdout: {e.stdout}\nstderr: {e.stderr}")
        took = time.monotonic() - started
        failed = proc.returncode != 0
        if failed != expect_failure:
            pytest.fail(f"{guide.name}:{line}: exit {proc.returncode} after {took:.1f} s "
                        f"({'expected a failure' if expect_failure else 'expected success'})\n"
                        f"{body}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")


# --- flags -------------------------------------------------------------------------

COMMAND = re.compile(r"(?<![\w/.-])prognos((?:[ \t]+(?:\\\n)?[ \t]*[^\s`|;&)]+)*)")


@pytest.fixture(scope="module")
def help_of(prognos_bin):
    cache: dict[tuple, str] = {}

    def get(path: tuple) -> str:
        if path not in cache:
            out = subprocess.run([str(prognos_bin), *path, "--help"], capture_output=True,
                                 text=True, timeout=30)
            assert out.returncode == 0, f"prognos {' '.join(path)} --help: {out.stderr}"
            cache[path] = out.stdout
        return cache[path]
    return get


def _subcommands(help_text: str) -> set[str]:
    m = re.search(r"^Commands:\n(.*?)(?:\n\S|\Z)", help_text, re.S | re.M)
    if not m:
        return set()
    return {line.split()[0] for line in m.group(1).splitlines()
            if line.startswith("  ") and not line.startswith("   ") and line.split()}


def _commands(text: str) -> list[list[str]]:
    """The words after `prognos` in every command line of a text (up to `--`)."""
    out = []
    for m in COMMAND.finditer(text):
        words = m.group(1).replace("\\\n", " ").split()
        if "--" in words:
            words = words[:words.index("--")]
        out.append(words)
    return out


def _doc_texts() -> list[tuple[str, str]]:
    """(guide, text) of every code block and inline code span of the guides."""
    out = []
    for g in GUIDES:
        text = g.read_text()
        for _, body, _ in _blocks(g):
            out.append((g.name, body))
        prose = FENCE.sub("", text)
        out.extend((g.name, span) for span in re.findall(r"`([^`\n]+)`", prose))
    return out


def test_flags_are_in_help(help_of):
    checked = 0
    problems = []
    for guide, text in _doc_texts():
        for words in _commands(text):
            path: tuple = ()
            for w in words:
                if w.startswith("-"):
                    break
                if w in _subcommands(help_of(path)):
                    path = path + (w,)
                else:
                    break
            if not path:
                continue
            helptext = help_of(path)
            for w in words:
                if w.startswith("--") and len(w) > 2:
                    flag = w.split("=")[0].rstrip(",.:")
                    checked += 1
                    if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helptext):
                        problems.append(f"{guide}: `prognos {' '.join(path)}` has no {flag}")
    assert checked > 20, "found almost no flags in the guides: is the parser broken?"
    assert not problems, "\n".join(problems)


# --- names: routes, metrics, log lines, variables -----------------------------------

@pytest.fixture(scope="module")
def live(prognos_bin, tmp_path_factory):
    """A `prognos run` on port 0 (rules only, small): its base URL."""
    data = tmp_path_factory.mktemp("docs-live")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROGNOS_")}
    env.update(PROGNOS_ADMIN_PASSWORD="docs test password", PROGNOS_SIMULATOR__MACHINES_PER_ORG="1",
               RUST_LOG="info", NO_COLOR="1")
    proc = subprocess.Popen(
        [str(prognos_bin), "run", "--listen", "127.0.0.1:0", "--data-dir", str(data),
         "--no-first-models", "--speed", "60"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    addr: list[str] = []
    found = threading.Event()

    def drain():
        for line in proc.stderr:
            log.append(line)
            m = re.search(r"API listening on (http://[0-9.:]+)", line)
            if m and not addr:
                addr.append(m.group(1))
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        if not found.wait(60):
            pytest.fail("prognos run did not start:\n" + "".join(log))
        yield addr[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def openapi(live) -> dict:
    with urllib.request.urlopen(f"{live}/api/openapi.json", timeout=30) as r:
        return json.load(r)


def test_api_reference_is_current(openapi):
    spec = importlib.util.spec_from_file_location("api_reference", ROOT / "scripts/api-reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    want = mod.render(openapi)
    have = (DOCS / "api.md").read_text()
    assert have == want, ("docs/api.md is stale: run `scripts/api-reference.py "
                          "http://127.0.0.1:8080 --out docs/api.md` against a running service")


ROUTE = re.compile(r"(?<![\w.])(/api/[A-Za-z0-9_{}$<>./:-]*[A-Za-z0-9_}>]|/ws|/healthz|/readyz|/metrics)(?![\w/])")


def _route_matches(mentioned: str, templates: list[str]) -> bool:
    mentioned = mentioned.split("?")[0]
    parts = mentioned.strip("/").split("/")
    for t in templates:
        tparts = t.strip("/").split("/")
        if len(tparts) != len(parts):
            continue
        if all(tp == p or tp.startswith("{") or p.startswith(("{", "$", "<")) for tp, p in zip(tparts, parts)):
            return True
    return False


def test_routes_exist(openapi):
    templates = list(openapi["paths"])
    problems, seen = [], 0
    for g in GUIDES:
        for m in ROUTE.finditer(g.read_text()):
            route = m.group(1)
            # `/api/health/*`, `/api/ml/status|versions`: a family, check each member
            members = [route]
            if "|" in route:
                head, _, tail = route.rpartition("/")
                members = [f"{head}/{x}" for x in tail.split("|")]
            for r in members:
                seen += 1
                if r.endswith("/*"):
                    ok = any(t.startswith(r[:-1]) for t in templates)
                else:
                    ok = _route_matches(r, templates)
                if not ok:
                    problems.append(f"{g.name}: {r}")
    assert seen > 10
    assert not problems, "routes the API does not serve:\n" + "\n".join(problems)


def test_metric_names_exist():
    defined = set(re.findall(r'"((?:prognos|process)_[a-z0-9_]+)"', SOURCE))
    defined |= {"process_resident_memory_bytes", "process_virtual_memory_bytes",
                "process_cpu_seconds_total", "process_start_time_seconds",
                "process_open_fds", "process_threads"}
    problems = []
    for g in GUIDES:
        for name in set(re.findall(r"\b(prognos_[a-z0-9_]+[a-z0-9])(\*|…)?", g.read_text())):
            base, wildcard = name
            if wildcard:
                ok = any(d.startswith(base) for d in defined)
            else:
                stem = re.sub(r"_(bucket|sum|count)$", "", base)
                ok = base in defined or stem in defined
            if not ok:
                problems.append(f"{g.name}: {base}")
    assert not problems, "metrics the source does not define:\n" + "\n".join(problems)


def test_log_lines_exist():
    problems, seen = [], 0
    for g in GUIDES:
        for level, msg in re.findall(r"`(INFO|WARN|ERROR|Error:) ([^`]+)`", g.read_text()):
            seen += 1
            # `{...}` and `…` stand for what the process fills in
            pieces = [p for p in re.split(r"\{[^}]*\}|…", msg) if p.strip()]
            if not all(p in SOURCE for p in pieces):
                problems.append(f"{g.name}: {level} {msg}")
    assert seen >= 10, "troubleshooting names almost no log line"
    assert not problems, "log lines the source does not write:\n" + "\n".join(problems)


def test_variables_exist():
    problems = []
    for g in GUIDES:
        for var in set(re.findall(r"\b(PROGNOS_[A-Z0-9_]*[A-Z0-9])\b", g.read_text())):
            if "__" in var:
                continue  # configuration overrides: see the next test
            if var not in SOURCE:
                problems.append(f"{g.name}: {var}")
    assert not problems, "variables nothing reads:\n" + "\n".join(problems)


def test_configuration_overrides_are_valid(prognos_bin):
    checked = 0
    problems = []
    for g in GUIDES:
        # a ```sh test-fails``` block shows a bad value on purpose
        text = FENCE.sub(lambda m: "" if m.group(1).strip() == "sh test-fails" else m.group(0),
                         g.read_text())
        for var, value in set(re.findall(r"\b(PROGNOS_[A-Z0-9_]+__[A-Z0-9_]+)=([^\s`'\"]+|'[^']*'|\"[^\"]*\")",
                                         text)):
            value = value.strip("'\"")
            if "$" in value or "<" in value:
                continue
            config = ROOT / ("config/examples/pumps.toml" if "PUMPCO" in var
                             else "config/prognos.example.toml")
            env = {k: v for k, v in os.environ.items() if not k.startswith("PROGNOS_")}
            env[var] = value
            env["RUST_BACKTRACE"] = "0"
            out = subprocess.run([str(prognos_bin), "check", "--config-only", "--config", str(config)],
                                 env=env, capture_output=True, text=True, timeout=30)
            checked += 1
            if out.returncode != 0:
                problems.append(f"{g.name}: {var}={value}: {out.stderr.strip()[-300:]}")
    assert checked >= 3
    assert not problems, "\n".join(problems)


# --- links -------------------------------------------------------------------------

def _slug(heading: str) -> str:
    h = re.sub(r"<[^>]+>", "", heading).strip().lower()
    h = re.sub(r"[`*_~]", lambda m: "_" if m.group(0) == "_" else "", h)
    return re.sub(r"[^a-z0-9 _-]", "", h).replace(" ", "-")


def _anchors(path: pathlib.Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        s = _slug(m.group(1))
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def test_links_resolve():
    problems = []
    checked = 0
    for g in sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]:
        text = FENCE.sub("", g.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            if g.name == "README.md" and g.parent == ROOT and not target.startswith("docs/"):
                continue  # the README's own links are not the guides' business
            file_part, _, anchor = target.partition("#")
            dest = (g.parent / file_part).resolve() if file_part else g
            checked += 1
            if not dest.exists():
                problems.append(f"{g.relative_to(ROOT)}: {target} (no such file)")
                continue
            if anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                problems.append(f"{g.relative_to(ROOT)}: {target} (no such heading)")
    assert checked > 20
    assert not problems, "\n".join(problems)
