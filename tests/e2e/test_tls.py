"""HTTPS: `drover server --tls-cert/--tls-key`, verified by the CLI and the agent (--ca-file,
DROVER_CA_FILE, else the system's store).

A certificate authority is made once per session with the openssl command in a temporary
folder; it signs a certificate for the host name `localhost` only, so that the same server
reached as 127.0.0.1 is a wrong host name. Everything talks to loopback.
"""
import hashlib
import json
import os
import socket
import subprocess

import pytest
import requests

from agentutil import make_agent, submit, wait_job  # noqa: F401
from conftest import BIN, Server, free_port, read_text, refused, wait_for
from test_metrics import check_conventions, sample

FAST = ("--heartbeat", "1", "--lost-after", "3")


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """ca.pem, and cert.pem + key.pem for DNS:localhost signed by it; other.pem + other.key, a
    self-signed certificate nobody trusts."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=drover test CA", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "srv.csr",
            "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "cert.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out",
            "other.pem", "-days", "2", "-subj", "/CN=localhost", cwd=d)
    return {name: str(d / name) for name in
            ("ca.pem", "cert.pem", "key.pem", "other.pem", "other.key")}


class TlsServer(Server):
    """A server on https://localhost:PORT (listening on 127.0.0.1)."""

    def __init__(self, data_dir, pki, extra_args=(), command="server"):
        super().__init__(data_dir, ["--tls-cert", pki["cert.pem"], "--tls-key", pki["key.pem"]]
                         + list(extra_args), command=command)
        self.url = f"https://localhost:{self.port}"


@pytest.fixture
def tls_env(pki, monkeypatch):
    """requests (the test's own client) trusts the test CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki["ca.pem"])
    return pki


@pytest.fixture
def tls_server(tmp_path, tls_env):
    s = TlsServer(tmp_path / "data", tls_env, FAST).start()
    yield s
    s.kill()


def cli(server, *args, env=None, ca=None):
    e = {"DROVER_CA_FILE": ""}
    e.update(env or {})
    extra = ["--ca-file", ca] if ca else []
    return server.run_cli(*(list(args) + extra), env=e)


def test_server_serves_https_and_status(tls_server, pki):
    r = requests.get(tls_server.url + "/healthz", timeout=10, verify=pki["ca.pem"])
    assert r.status_code == 200 and r.json()["status"] == "ok"
    st = tls_server.api().get("/v1/status")
    assert st.status_code == 200, st.text
    assert st.json()["tls"] is True and st.json()["warnings"] == []
    # without the CA (the system's store only), the server is not trusted
    plain = requests.Session()
    plain.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(tls_server.url + "/healthz", timeout=10)
    # plain HTTP on the TLS port gets no answer
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=10, verify=False)
    assert "serving on https://" in tls_server.read_log()
    text = requests.get(tls_server.url + "/metrics", timeout=10).text
    check_conventions(text)
    assert sample(text, "drover_tls_accepted_total") >= 4
    assert sample(text, "drover_tls_handshake_failures_total") >= 2  # the untrusting clients


def test_cli_with_the_ca_works(tls_server, pki):
    r = cli(tls_server, "queues", "--json", ca=pki["ca.pem"])
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)
    r = cli(tls_server, "queues", "--json", env={"DROVER_CA_FILE": pki["ca.pem"]})
    assert r.returncode == 0, r.stderr


def test_cli_without_the_ca_fails_clearly(tls_server, pki):
    err = refused(cli(tls_server, "queues"))
    assert f"cannot verify the TLS certificate of the drover server at {tls_server.url}" in err
    assert "--ca-file or DROVER_CA_FILE" in err
    # a CA that did not sign it is no better
    err = refused(cli(tls_server, "queues", ca=pki["other.pem"]))
    assert "cannot verify the TLS certificate" in err


def test_wrong_host_name_fails(tls_server, pki):
    url = f"https://127.0.0.1:{tls_server.port}"
    err = refused(cli(tls_server, "queues", env={"DROVER_SERVER": url}, ca=pki["ca.pem"]))
    assert f"cannot verify the TLS certificate of the drover server at {url}" in err
    assert "127.0.0.1" in err and "name" in err, err


def test_https_to_a_plain_http_server_says_so(server):
    url = f"https://127.0.0.1:{server.port}"
    err = refused(cli(server, "queues", env={"DROVER_SERVER": url}))
    assert f"cannot make a TLS connection to the drover server at {url}" in err
    assert "does it serve plain HTTP? then its URL starts with http://" in err, err


def test_bad_ca_file_is_named(tls_server, tmp_path):
    missing = str(tmp_path / "nope.pem")
    err = refused(cli(tls_server, "queues", ca=missing))
    assert f"cannot read the CA file '{missing}'" in err
    r = subprocess.run([BIN, "agent", "--server", tls_server.url, "--ca-file", missing],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and f"'{missing}'" in r.stderr, r.stderr


def test_agent_runs_a_job_over_tls_with_presigned_https_urls(tls_server, pki, make_agent):
    api = tls_server.api()
    data = os.urandom(3000)
    assert api.put("/v1/blobs/data/in.bin", data=data).status_code == 200
    p = api.post("/v1/presign", json={"method": "GET", "uri": "s3://data/in.bin"})
    assert p.status_code == 200, p.text
    assert p.json()["url"].startswith(f"https://localhost:{tls_server.port}/"), p.json()
    got = requests.get(p.json()["url"], timeout=10)  # no token: the URL is enough
    assert got.status_code == 200 and got.content == data

    make_agent(tls_server, "tls-w1", "--ca-file", pki["ca.pem"])
    job = submit(tls_server, command={
        "program": "sh", "arguments": [
            {"type": "parameter", "value": "-c"},
            {"type": "parameter", "value": 'sha256sum "$1" | cut -c1-64 > "$2"'},
            {"type": "parameter", "value": "sh"},
            {"type": "input", "value": "s3://data/in.bin"},
            {"type": "output", "value": "s3://data/out.txt"}]})
    j = wait_job(tls_server, job, timeout=60)
    assert j["state"] == "succeeded", j
    out = api.get("/v1/blobs/data/out.txt")
    assert out.status_code == 200
    assert out.text.strip() == hashlib.sha256(data).hexdigest()


def test_large_objects_and_refusals_over_tls(tls_server):
    """Bodies larger than the TLS front's pipe buffer go through whole both ways, and a
    refused upload's answer reaches a client that sends its whole body first."""
    api = tls_server.api()
    data = os.urandom(5 * 1024 * 1024 + 17)
    r = api.put("/v1/blobs/data/big.bin", data=data)
    assert r.status_code == 200, r.text
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
    got = api.get("/v1/blobs/data/big.bin")
    assert got.status_code == 200 and got.content == data
    r = requests.put(tls_server.url + "/v1/blobs/data/nope.bin", data=data, timeout=60,
                     headers={"Authorization": "Bearer drv_" + "0" * 64})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthenticated"


def test_clean_shutdown_with_connections_open(tmp_path, tls_env):
    """SIGTERM with a connection mid-handshake and one kept alive: the server exits 0 (under
    ASan, also with no leak), and its Unix socket is gone."""
    s = TlsServer(tmp_path / "stop", tls_env).start()
    try:
        raw = socket.create_connection(("127.0.0.1", s.port), timeout=10)  # no handshake
        session = requests.Session()
        assert session.get(s.url + "/healthz", timeout=10).status_code == 200  # kept alive
        assert os.path.exists(os.path.join(s.data_dir, "tls.sock"))
        assert s.stop() == 0, s.read_log()
        assert not os.path.exists(os.path.join(s.data_dir, "tls.sock"))
        raw.close()
        session.close()
    finally:
        s.kill()


def test_agent_without_the_ca_cannot_register(tls_server, make_agent):
    a = make_agent(tls_server, "tls-untrusting", wait=False)
    wait_for(lambda: "cannot verify the TLS certificate" in a.read_log(), 30,
             "the agent to say it cannot verify the server")
    assert a.state() is None  # never registered


def test_bad_certificate_options(tmp_path, pki):
    def run(*args):
        return subprocess.run([BIN, "server", "--listen", f"127.0.0.1:{free_port()}", "--data",
                               str(tmp_path / "d")] + list(args), capture_output=True,
                              text=True, timeout=30)
    r = run("--tls-cert", pki["cert.pem"])
    assert r.returncode == 2 and "--tls-cert and --tls-key go together" in r.stderr
    missing = str(tmp_path / "missing.pem")
    r = run("--tls-cert", missing, "--tls-key", pki["key.pem"])
    assert r.returncode == 1, r.stderr
    assert f"cannot read --tls-cert '{missing}': No such file or directory" in r.stderr, r.stderr
    r = run("--tls-cert", pki["cert.pem"], "--tls-key", missing)
    assert r.returncode == 1, r.stderr
    assert f"cannot read --tls-key '{missing}': No such file or directory" in r.stderr, r.stderr
    assert not (tmp_path / "d").exists()  # nothing made
    r = run("--tls-cert", pki["cert.pem"], "--tls-key", pki["other.key"])
    assert r.returncode == 1 and "does not belong to --tls-cert" in r.stderr, r.stderr
    r = run("--tls-cert", pki["cert.pem"], "--tls-key", pki["ca.pem"])  # not a key
    assert r.returncode == 1 and "cannot use --tls-key" in r.stderr, r.stderr


def test_plain_http_warned_about_off_loopback(tmp_path):
    """Plain HTTP on loopback is quiet; anywhere else it is warned about in the log and in
    GET /v1/status. (The second server listens on every address for a moment; the test talks
    to it on loopback only.)"""
    local = Server(tmp_path / "a").start()
    try:
        st = local.api().get("/v1/status").json()
        assert st["tls"] is False and st["warnings"] == []
        assert "not loopback" not in local.read_log()
    finally:
        local.kill()
    port = free_port()
    wide = Server(tmp_path / "b", port=port)  # not started: its url, log and api() only
    os.makedirs(wide.data_dir, exist_ok=True)
    log = open(wide.log_path, "ab")
    proc = subprocess.Popen([BIN, "server", "--listen", f"0.0.0.0:{port}", "--data",
                             wide.data_dir], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _healthy(wide.url), 20, "the server to answer")
        st = wide.api().get("/v1/status").json()
        assert len(st["warnings"]) == 1, st
        assert "plain HTTP on 0.0.0.0" in st["warnings"][0]
        assert "--tls-cert" in st["warnings"][0]
        assert "not loopback" in read_text(wide.log_path)
    finally:
        proc.kill()
        proc.wait()
        log.close()


def _healthy(url):
    try:
        return requests.get(url + "/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_dev_over_tls(tmp_path, tls_env):
    d = TlsServer(tmp_path / "dev", tls_env, ["--slots", "1", "--ca-file", tls_env["ca.pem"]],
                  command="dev").start()
    try:
        job = submit(d, command={"program": "echo", "arguments": [
            {"type": "parameter", "value": "over tls"}]})
        j = wait_job(d, job, timeout=60)
        assert j["state"] == "succeeded", (j, d.read_log())
        assert j["result"]["stdout"] == "over tls\n"
    finally:
        d.kill()
