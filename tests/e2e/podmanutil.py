"""Real podman for end-to-end tests: its configuration, a registry and an image, made
once per test session (session-scoped fixtures), for any test that needs containers.

- `podman_env`: CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF
  pointing at files in a temporary folder: the session's own image store (not the
  machine's), the runc runtime with the cgroupfs manager, no default ulimits above the
  caller's, and the loopback registries below marked insecure (plain HTTP). Give it to
  `drover agent` (make_agent(..., env=podman_env)) and to `podman()`.
- `registry`: Debian's docker-registry on a free loopback port (its config in the
  temporary folder), stopped by PID at the end of the session.
- `slow_registry`: a reverse proxy on another loopback port in front of `registry` that
  counts the requests it forwards, by path, and can hold each blob download back by
  `delay_s` seconds (a slow pull, or how many pulls happened).
- `busybox_image`: an image made from Debian's busybox-static (/bin/busybox and a link
  per applet), imported and pushed to `registry` as REGISTRY/drover-test/busybox:1; the
  local copy is removed, so a job's agent has to pull it.

Nothing here reaches beyond loopback; every process started is stopped by its PID.
"""
import http.client
import http.server
import os
import shutil
import subprocess
import tarfile
import threading
import time

import pytest

from conftest import free_port, stop_process, wait_for

BUSYBOX = "/bin/busybox"


def podman(env, *args, check=True, timeout=120, input=None):
    """Runs `podman ARGS` with the session's configuration; returns the CompletedProcess."""
    # in the session's folder: podman's helpers may leave files in their working folder
    r = subprocess.run(["podman"] + list(args), env=dict(os.environ, **env), capture_output=True,
                       text=True, timeout=timeout, input=input,
                       cwd=os.path.dirname(env["CONTAINERS_CONF"]))
    if check:
        assert r.returncode == 0, f"podman {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def containers(env, name_prefix):
    """Names of the containers (any state) whose name starts with name_prefix."""
    r = podman(env, "ps", "-a", "--format", "{{.Names}}")
    return [n for n in r.stdout.split() if n.startswith(name_prefix)]


def image_present(env, image):
    return podman(env, "image", "exists", image, check=False).returncode == 0


def remove_image(env, image):
    if image_present(env, image):
        podman(env, "rmi", "-f", image)


@pytest.fixture(scope="session")
def podman_dir(tmp_path_factory):
    assert shutil.which("podman"), "podman is not installed: scripts/deps.sh test"
    assert shutil.which("runc"), "runc is not installed: scripts/deps.sh test"
    return tmp_path_factory.mktemp("podman")


@pytest.fixture(scope="session")
def registry_ports():
    return {"registry": free_port(), "proxy": free_port()}


@pytest.fixture(scope="session")
def podman_env(podman_dir, registry_ports):
    d = podman_dir
    (d / "containers.conf").write_text(
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        "[containers]\n"
        "default_ulimits = []\n")
    (d / "storage.conf").write_text(
        "[storage]\n"
        'driver = "vfs"\n'
        f'graphroot = "{d}/graph"\n'
        f'runroot = "{d}/run"\n')
    regs = "unqualified-search-registries = []\n"
    for port in registry_ports.values():
        regs += f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n'
    (d / "registries.conf").write_text(regs)
    env = {"CONTAINERS_CONF": str(d / "containers.conf"),
           "CONTAINERS_STORAGE_CONF": str(d / "storage.conf"),
           "CONTAINERS_REGISTRIES_CONF": str(d / "registries.conf")}
    yield env
    # the session's containers and store go with it (its folder is pytest's temporary one)
    r = podman(env, "ps", "-a", "-q", check=False)
    if r.stdout.split():
        podman(env, "rm", "-f", *r.stdout.split(), check=False)


@pytest.fixture(scope="session")
def registry(podman_dir, registry_ports):
    assert shutil.which("docker-registry"), \
        "docker-registry is not installed: scripts/deps.sh test"
    port = registry_ports["registry"]
    conf = podman_dir / "registry.yml"
    conf.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {podman_dir}/registry\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    log = open(podman_dir / "registry.log", "ab")
    proc = subprocess.Popen(["docker-registry", "serve", str(conf)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def up():
        assert proc.poll() is None, "docker-registry exited: " + \
            (podman_dir / "registry.log").read_text()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v2/")
            return c.getresponse().status == 200
        except OSError:
            return False
    wait_for(up, 20, "the registry to answer")
    yield f"127.0.0.1:{port}"
    stop_process(proc, 15, timeout=10)
    log.close()


class SlowRegistry:
    """A reverse proxy to the registry: counts requests by (method, path); holds back each
    blob download by delay_s."""

    def __init__(self, port, upstream_port):
        self.port = port
        self.upstream = upstream_port
        self.delay_s = 0.0
        self.requests = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                with proxy.lock:
                    proxy.requests.append((self.command, self.path))
                if self.command == "GET" and "/blobs/" in self.path and proxy.delay_s:
                    time.sleep(proxy.delay_s)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                c = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=30)
                c.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():  # every one: a client sends several Accept
                    if k.lower() != "connection":
                        c.putheader(k, v)
                c.endheaders(body)
                r = c.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                c.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def reset(self, delay_s=0.0):
        with self.lock:
            self.requests = []
            self.delay_s = delay_s

    def blob_gets(self):
        with self.lock:
            return [p for m, p in self.requests if m == "GET" and "/blobs/" in p]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def slow_registry(registry, registry_ports):
    proxy = SlowRegistry(registry_ports["proxy"], registry_ports["registry"])
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def busybox_image(podman_env, podman_dir, registry):
    """REGISTRY/drover-test/busybox:1, in the registry only (no local copy)."""
    assert os.path.exists(BUSYBOX), "busybox-static is not installed: scripts/deps.sh test"
    root = podman_dir / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "tmp").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for name in applets:
        if name != "busybox" and "/" not in name:
            os.symlink("busybox", root / "bin" / name)
    tar = podman_dir / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        t.add(root, arcname=".")
    local = "localhost/drover-test/busybox:1"
    image = f"{registry}/drover-test/busybox:1"
    podman(podman_env, "import", "--change", "ENV=PATH=/bin", str(tar), local)
    podman(podman_env, "push", "--tls-verify=false", local, f"docker://{image}")
    podman(podman_env, "rmi", "-f", local)
    return image
