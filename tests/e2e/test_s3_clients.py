"""The S3 blob backend through `drover server --blobs s3://...`, side by side with real S3
clients (boto3 and the aws CLI) on the same S3-compatible server (s3rver, installed and
started here with scripts/s3rver.sh on a free loopback port, stopped by its PID).

- objects written through /v1/blobs are plain S3 objects "<bucket>/<key>" with their SHA-256
  as x-amz-meta-sha256, readable by boto3 and the aws CLI;
- POST /v1/presign answers real S3 presigned URLs (pointing at the S3 service, not at drover)
  that work with no credential (plain HTTP), for GET, PUT, HEAD and DELETE;
- objects written by boto3, the aws CLI or a presigned PUT (no SHA-256 metadata) are read,
  listed and hashed by drover like its own.

s3rver does not check SigV4 signatures (tests/unit/test_blob_s3.c checks the signer against
AWS's published examples); what it does refuse of a tampered URL is tested here.
"""
import hashlib
import os
import socket
import subprocess
import time
import urllib.parse

import boto3
import pytest
import requests
from botocore.config import Config

from agentutil import make_agent, submit, wait_job  # noqa: F401
from conftest import ROOT, free_port, stop_process, wait_for

S3_BUCKET = "drover-test"
SCRIPT = os.path.join(ROOT, "scripts", "s3rver.sh")
CREDS = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER",
         "AWS_DEFAULT_REGION": "us-east-1"}


def _listening(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def s3rver(tmp_path):
    """An s3rver with the bucket drover-test; yields its endpoint URL. No skip: a server that
    cannot be installed or started fails the test."""
    subprocess.run([SCRIPT, "install"], check=True, timeout=600)
    port = free_port()
    log = open(tmp_path / "s3rver.log", "wb")
    proc = subprocess.Popen([SCRIPT, "start", str(port), str(tmp_path / "s3data"),
                             "--configure-bucket", S3_BUCKET],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: proc.poll() is not None or _listening(port), timeout=30,
                 what="s3rver to listen")
        assert proc.poll() is None, "s3rver exited: " + (tmp_path / "s3rver.log").read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc, 15, timeout=10)
        log.close()


@pytest.fixture
def s3(s3rver, make_server, monkeypatch):
    """(drover server on the S3 store, boto3 client, endpoint)."""
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    srv = make_server("--blobs", f"s3://{S3_BUCKET}?endpoint={s3rver}")
    client = boto3.client("s3", endpoint_url=s3rver, region_name="us-east-1",
                          aws_access_key_id="S3RVER", aws_secret_access_key="S3RVER",
                          config=Config(s3={"addressing_style": "path"},
                                        signature_version="s3v4"))
    return srv, client, s3rver


def aws_cli(endpoint, *args, input=None):
    env = dict(os.environ, **CREDS)
    return subprocess.run(["aws", "--endpoint-url", endpoint, *args], env=env, input=input,
                          capture_output=True, timeout=120)


def presign(srv, method, uri, expires_s=300):
    r = srv.api().post("/v1/presign", json={"method": method, "uri": uri, "expires_s": expires_s})
    assert r.status_code == 200, r.text
    return r.json()["url"]


def test_put_through_drover_read_by_boto3_and_aws_cli(s3):
    srv, client, endpoint = s3
    body = os.urandom(300_000)
    sha = hashlib.sha256(body).hexdigest()
    r = srv.api().put("/v1/blobs/bk/dir/a b.bin", data=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"uri": "s3://bk/dir/a b.bin", "size": len(body), "sha256": sha}

    # The S3 object "<bucket>/<key>", with the sum as metadata.
    obj = client.get_object(Bucket=S3_BUCKET, Key="bk/dir/a b.bin")
    assert obj["Body"].read() == body
    assert obj["Metadata"]["sha256"] == sha
    out = aws_cli(endpoint, "s3", "cp", f"s3://{S3_BUCKET}/bk/dir/a b.bin", "-")
    assert out.returncode == 0, out.stderr
    assert out.stdout == body

    # And back through drover: whole, a range, HEAD, listing.
    r = srv.api().get("/v1/blobs/bk/dir/a%20b.bin")
    assert r.status_code == 200 and r.content == body
    r = srv.api().get("/v1/blobs/bk/dir/a%20b.bin", headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == body[1000:2000]
    r = srv.api().head("/v1/blobs/bk/dir/a%20b.bin")
    assert r.headers["X-Drover-Sha256"] == sha
    assert int(r.headers["Content-Length"]) == len(body)
    r = srv.api().get("/v1/blobs/bk", params={"prefix": "dir/"})
    assert [(o["key"], o["size"], o["sha256"]) for o in r.json()["objects"]] == \
        [("dir/a b.bin", len(body), sha)]


def test_presigned_urls_point_at_s3_and_need_no_credential(s3):
    srv, client, endpoint = s3
    body = b"put through a presigned url\n" * 1000
    sha = hashlib.sha256(body).hexdigest()
    url = presign(srv, "PUT", "s3://bk/up/x.bin")
    assert url.startswith(endpoint + f"/{S3_BUCKET}/bk/up/x.bin?")
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert q["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and q["X-Amz-Expires"] == ["300"]
    assert q["X-Amz-SignedHeaders"] == ["host"]
    r = requests.put(url, data=body, timeout=30)
    assert r.status_code == 200, r.text

    # Written without metadata: drover hashes it on first read and saves the sum.
    assert "sha256" not in client.head_object(Bucket=S3_BUCKET, Key="bk/up/x.bin")["Metadata"]
    r = srv.api().head("/v1/blobs/bk/up/x.bin")
    assert r.status_code == 200 and r.headers["X-Drover-Sha256"] == sha
    assert client.head_object(Bucket=S3_BUCKET, Key="bk/up/x.bin")["Metadata"]["sha256"] == sha

    r = requests.get(presign(srv, "GET", "s3://bk/up/x.bin"), timeout=30)
    assert r.status_code == 200 and r.content == body
    r = requests.head(presign(srv, "HEAD", "s3://bk/up/x.bin"), timeout=30)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(body)

    # What s3rver refuses of a tampered URL: another access key, an expired URL.
    get = presign(srv, "GET", "s3://bk/up/x.bin")
    r = requests.get(get.replace("X-Amz-Credential=S3RVER", "X-Amz-Credential=NOBODY"), timeout=30)
    assert r.status_code == 403 and "InvalidAccessKeyId" in r.text
    short = presign(srv, "GET", "s3://bk/up/x.bin", expires_s=1)
    time.sleep(2)
    r = requests.get(short, timeout=30)
    assert r.status_code == 403 and "expired" in r.text

    r = requests.delete(presign(srv, "DELETE", "s3://bk/up/x.bin"), timeout=30)
    assert r.status_code == 204
    assert srv.api().head("/v1/blobs/bk/up/x.bin").status_code == 404


def test_objects_from_boto3_and_aws_cli_served_by_drover(s3, tmp_path):
    srv, client, endpoint = s3
    a = os.urandom(70_000)
    client.put_object(Bucket=S3_BUCKET, Key="bk/ext/from-boto3", Body=a)
    b = os.urandom(9_000_000)  # the CLI uploads this in parts
    f = tmp_path / "b.bin"
    f.write_bytes(b)
    out = aws_cli(endpoint, "s3", "cp", str(f), f"s3://{S3_BUCKET}/bk/ext/from-cli")
    assert out.returncode == 0, out.stderr

    r = srv.api().get("/v1/blobs/bk", params={"prefix": "ext/", "limit": 1})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [o["key"] for o in page["objects"]] == ["ext/from-boto3"]
    assert page["objects"][0]["sha256"] == hashlib.sha256(a).hexdigest()
    r = srv.api().get("/v1/blobs/bk", params={"prefix": "ext/", "after": page["next"]})
    objs = r.json()["objects"]
    assert [(o["key"], o["sha256"]) for o in objs] == \
        [("ext/from-cli", hashlib.sha256(b).hexdigest())]
    r = srv.api().get("/v1/blobs/bk/ext/from-cli", headers={"Range": "bytes=8999990-"})
    assert r.status_code == 206 and r.content == b[8999990:]


def test_buckets_on_an_s3_store(s3):
    """drover's buckets are the first parts of the S3 bucket's keys: listed, with what another
    tool put there that names no drover bucket left out."""
    srv, client, _ = s3
    for b in ("lb-c", "lb-a", "lb-b"):  # keys of one level: s3rver's delimiter needs them
        assert srv.api().put(f"/v1/blobs/{b}/k1", data=b"x").status_code == 200
    client.put_object(Bucket=S3_BUCKET, Key="Not_A_Bucket/x", Body=b"y")
    client.put_object(Bucket=S3_BUCKET, Key="at-the-root", Body=b"z")
    # one page (s3rver counts max-keys before it groups by the delimiter, and says the rest
    # is not truncated: pages are tested on the fs store, test_blobs.py; AWS S3 and MinIO
    # count the prefixes)
    r = srv.api().get("/v1/blobs")
    assert r.status_code == 200 and r.json()["next"] is None, r.text
    names = [b["name"] for b in r.json()["buckets"]]
    assert [n for n in names if n.startswith("lb-")] == ["lb-a", "lb-b", "lb-c"], names
    assert names == sorted(names) and "Not_A_Bucket" not in names and "at-the-root" not in names


def test_bad_requests_on_an_s3_store(s3):
    srv, client, endpoint = s3
    api = srv.api()
    assert api.get("/v1/blobs/bk/missing").status_code == 404
    assert api.post("/v1/presign", json={"method": "POST", "uri": "s3://bk/k"}).status_code == 400
    assert api.post("/v1/presign", json={"method": "GET", "uri": "s3://bk/../k"}).status_code == 400
    assert api.post("/v1/presign",
                    json={"method": "GET", "uri": "s3://bk/k", "expires_s": 10**9}).status_code \
        == 400
    api.put("/v1/blobs/bk/r", data=b"0123456789")
    assert api.get("/v1/blobs/bk/r", headers={"Range": "bytes=10-"}).status_code == 416


def test_missing_credentials_stop_the_server(s3rver, make_server, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "S3RVER")
    shared = tmp_path / "shared.db"  # a store outside the data folder, as PostgreSQL is
    with pytest.raises(RuntimeError, match="AWS_ACCESS_KEY_ID"):
        make_server("--blobs", f"s3://{S3_BUCKET}?endpoint={s3rver}", "--db", f"sqlite:{shared}")
    # refused before the store was opened: no admin token left in it without its file
    assert not shared.exists()


def test_start_says_whether_the_object_store_answers(s3rver, make_server, monkeypatch):
    """The server asks S3 once at start (its open sends nothing) and logs the outcome; a
    service that is down does not stop the start (it may come up later)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "S3RVER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "S3RVER")
    up = make_server("--blobs", f"s3://{S3_BUCKET}?endpoint={s3rver}")
    wait_for(lambda: "answers" in up.read_log(), what="the object store's probe")
    assert "does not answer" not in up.read_log()
    port = free_port()  # nothing listens there
    down = make_server("--blobs", f"s3://{S3_BUCKET}?endpoint=http://127.0.0.1:{port}")
    wait_for(lambda: "does not answer" in down.read_log(), what="the object store's probe")
    line = next(x for x in down.read_log().splitlines() if "does not answer" in x)
    assert f"127.0.0.1:{port}" in line and " warn " in line, line
    assert requests.get(down.url + "/healthz", timeout=5).status_code == 200
    # meanwhile object requests are 503s (try again later), naming the endpoint
    auth = {"Authorization": "Bearer " + down.admin_token}
    for r in (requests.get(down.url + "/v1/blobs/bk/k", headers=auth, timeout=10),
              requests.put(down.url + "/v1/blobs/bk/k", data=b"x", headers=auth, timeout=10)):
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["code"] == "unavailable" and f"127.0.0.1:{port}" in err["message"], err


def test_agent_stages_straight_from_and_to_s3(s3, make_agent, monkeypatch):
    """A job's input and output on the S3 store: the agent gets S3 presigned URLs from drover
    and moves the bytes to and from the S3 service itself (the agent has no AWS credentials)."""
    srv, client, endpoint = s3
    client.put_object(Bucket=S3_BUCKET, Key="bk/in/words.txt", Body=b"hello s3\n")
    for k in CREDS:  # the server has them; the agent starts without any
        monkeypatch.delenv(k, raising=False)
    make_agent(srv, "w1")
    job = submit(srv, command={"program": "sh", "arguments": [
        {"type": "parameter", "value": "-c"},
        {"type": "parameter", "value": 'tr a-z A-Z < "$1" > "$2"'},
        {"type": "parameter", "value": "sh"},
        {"type": "input", "value": "s3://bk/in/words.txt"},
        {"type": "output", "value": "s3://bk/out/shout.txt"}]})
    j = wait_job(srv, job, timeout=60)
    assert j["state"] == "succeeded", j
    body = client.get_object(Bucket=S3_BUCKET, Key="bk/out/shout.txt")["Body"].read()
    assert body == b"HELLO S3\n"
    assert j["result"]["outputs"] == [{"uri": "s3://bk/out/shout.txt", "size": len(body),
                                       "sha256": hashlib.sha256(body).hexdigest()}]


def test_large_object_through_drover_on_s3(s3):
    """20 MiB through drover to S3 and back: written in pieces off the event loop (multipart),
    read back in chunks; the server answers other calls meanwhile."""
    srv, client, endpoint = s3
    api = srv.api()
    body = os.urandom(20 << 20)
    r = api.put("/v1/blobs/bk/large.bin", data=body, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()
    got = api.get("/v1/blobs/bk/large.bin", timeout=120)
    assert got.status_code == 200 and got.content == body
    part = api.get("/v1/blobs/bk/large.bin", headers={"Range": "bytes=10485760-10485779"})
    assert part.status_code == 206 and part.content == body[10485760:10485780]
    assert client.head_object(Bucket=S3_BUCKET, Key="bk/large.bin")["ContentLength"] == len(body)


def test_concurrent_transfers_through_drover_on_s3(s3):
    """Several uploads and downloads at once, each in pieces on the offload threads."""
    import concurrent.futures
    srv, client, endpoint = s3
    bodies = {f"bk/conc/{i}": os.urandom((9 << 20) + i) for i in range(4)}

    def roundtrip(key):
        api = srv.api()  # a session (connection) per thread
        r = api.put(f"/v1/blobs/{key}", data=bodies[key], timeout=120)
        assert r.status_code == 200, r.text
        return api.get(f"/v1/blobs/{key}", timeout=120).content == bodies[key]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert all(pool.map(roundtrip, bodies, timeout=300))


def test_presign_prefix_on_s3(s3):
    """Every object under a prefix, each with a real S3 presigned GET URL (listed off the loop)."""
    srv, client, endpoint = s3
    api = srv.api()
    for ext in ["shp", "shx", "dbf"]:
        assert api.put(f"/v1/blobs/bk/maps/poly.{ext}", data=ext.encode()).status_code == 200
    r = api.post("/v1/presign", json={"method": "GET", "uri": "s3://bk/maps/poly", "prefix": True})
    assert r.status_code == 200, r.text
    objs = r.json()["objects"]
    assert [o["key"] for o in objs] == ["maps/poly.dbf", "maps/poly.shp", "maps/poly.shx"]
    for o in objs:
        assert o["url"].startswith(endpoint)
        assert requests.get(o["url"], timeout=30).content == o["key"].rsplit(".", 1)[1].encode()


def test_conditional_requests_on_an_s3_store(s3):
    """If-Range, If-None-Match and If-Modified-Since through drover on the S3 store answer as on
    the embedded one (test_blobs.py), and a write with a precondition is refused likewise.
    (Presigned URLs of an S3 store are the S3 service's: it judges their headers itself.)"""
    srv, client, endpoint = s3
    api = srv.api()
    old, new = b"old version " * 500, b"a NEW version " * 300
    assert api.put("/v1/blobs/bk/cond", data=old).status_code == 200
    tag_old = '"%s"' % hashlib.sha256(old).hexdigest()
    tag_new = '"%s"' % hashlib.sha256(new).hexdigest()
    assert api.put("/v1/blobs/bk/cond", data=new).status_code == 200

    r = api.get("/v1/blobs/bk/cond", headers={"Range": "bytes=5-", "If-Range": tag_old})
    assert r.status_code == 200 and r.content == new and "Content-Range" not in r.headers
    r = api.get("/v1/blobs/bk/cond", headers={"Range": "bytes=5-", "If-Range": tag_new})
    assert r.status_code == 206 and r.content == new[5:]
    for bad in ("W/" + tag_new, r.headers["Last-Modified"], "garbage"):
        r = api.get("/v1/blobs/bk/cond", headers={"Range": "bytes=5-", "If-Range": bad})
        assert r.status_code == 200 and r.content == new, bad

    for h in ({"If-None-Match": tag_new}, {"If-None-Match": f'"x", W/{tag_new}'},
              {"If-None-Match": "*"}, {"If-Modified-Since": r.headers["Last-Modified"]}):
        for method in (api.get, api.head):
            got = method("/v1/blobs/bk/cond", headers=h)
            assert got.status_code == 304 and got.content == b"", h
            assert got.headers["ETag"] == tag_new
    r = api.get("/v1/blobs/bk/cond", headers={"If-None-Match": tag_old})
    assert r.status_code == 200 and r.content == new

    for h in ({"If-Match": tag_old}, {"If-None-Match": "*"},
              {"If-Unmodified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}):
        r = api.put("/v1/blobs/bk/cond", data=b"lost?", headers=h)
        assert r.status_code == 400 and r.json()["error"]["field"] == next(iter(h)), r.text
        assert api.delete("/v1/blobs/bk/cond", headers=h).status_code == 400
    assert client.get_object(Bucket=S3_BUCKET, Key="bk/cond")["Body"].read() == new
