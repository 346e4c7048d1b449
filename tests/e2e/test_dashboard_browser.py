"""The dashboard in a real browser (Debian's chromium driven by playwright-core).

Starts a real server and agent on free loopback ports, then runs
tests/browser/dashboard.test.mjs with node's test runner against them: sign-in and
the cookie's flags, a job appearing and finishing live, its log followed, a cancel
from its page, a workflow's graph following its nodes live (cancel and retry from its
page), arrays (a grid of 12 tasks filling live, a range cancelled and retried from an
array's page, a million-task array paged by index range, markup in an array's name and
items shown as text), upload triggers firing while the page is open, the triggers page
(an upload trigger and a schedule listed, an upload trigger's page with its fire, a
schedule's page showing its fires live and deleting it after asking, markup in a prefix
and a job name shown as text), a drain, markup in names, labels and logs shown as text,
a cross-site POST refused, a screenshot of each page at desktop and phone width (kept in the
folder the test prints). scripts/deps.sh test installs chromium and runs `npm ci`
in tests/browser.
"""
import os
import shutil
import subprocess
import tempfile

import pytest

from agentutil import make_agent  # noqa: F401 (fixture)
from conftest import ROOT

pytestmark = pytest.mark.once

BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
SCRIPT = os.path.join(BROWSER_DIR, "dashboard.test.mjs")


def test_dashboard_in_a_browser(server, make_agent, capsys):
    node = shutil.which("node")
    assert node, "node is missing: run scripts/deps.sh test"
    assert os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")), \
        "playwright-core is missing: run scripts/deps.sh test (npm ci in tests/browser)"
    # at debug level: its log, shown when a test fails, tells each job's way through the agent
    agent = make_agent(server, "dash-agent", "--slots", "4", "--log-level", "debug")
    shots = os.environ.get("DROVER_SCREENSHOTS") or tempfile.mkdtemp(prefix="drover-dashboard-")
    env = dict(os.environ, DROVER_URL=server.url, DROVER_TOKEN=server.admin_token,
               DROVER_AGENT=agent.name, DROVER_SHOTS=shots)
    r = subprocess.run([node, "--test", "--test-reporter=spec", SCRIPT], cwd=BROWSER_DIR, env=env,
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    summary = [line for line in out.splitlines() if line.lstrip("ℹ ").startswith(("tests ", "pass ", "fail "))]
    with capsys.disabled():  # shown in scripts/test.sh's output, passed or not
        print(f"\nbrowser tests: {' · '.join(s.strip() for s in summary)}; screenshots in {shots}")
    assert r.returncode == 0, (out + "\n--- server log ---\n" + server.read_log()[-4000:]
                               + "\n--- agent log ---\n" + agent.read_log()[-8000:])
    assert any(s.strip().endswith("fail 0") for s in summary), out
    pngs = sorted(f for f in os.listdir(shots) if f.endswith(".png"))
    for page in ("signin", "jobs", "job-running", "queues", "agents", "workflow", "workflows",
                 "arrays", "array", "array-running", "array-cancelled", "array-million",
                 "triggers", "trigger"):
        for size in ("desktop", "phone"):
            assert f"{page}-{size}.png" in pngs, (page, size, pngs)
