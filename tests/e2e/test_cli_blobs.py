"""End-to-end tests of the object commands of the CLI: put, get, ls, rm, and the local
files (@path) of `drover submit`.

Each test runs the real `drover` binary against a real `drover server` (conftest's
`server` fixture) and checks what the server holds through its HTTP API.
"""
import hashlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import time

import pytest

from agentutil import make_agent  # noqa: F401
from conftest import (BIN, UUID, free_port, help_shown, ok, refused, submitted, table, usage_error,
                      wait_for)

BIG = 50 * 1000 * 1000  # bytes of the large-file tests


def run(server, *args, cwd=None, input=None, token=None, env=None, timeout=120):
    """`drover ARGS` against server with bytes in and out (objects are binary)."""
    return subprocess.run([BIN] + list(args), capture_output=True, input=input, cwd=cwd,
                          env=server.cli_env(token, env), timeout=timeout)


def text(r):
    """The result of run() with stdout and stderr decoded, for ok() / refused()."""
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(),
                                       r.stderr.decode())


def blob(server, uri):
    """The object's bytes and headers as the server gives them (GET /v1/blobs/...)."""
    assert uri.startswith("s3://")
    r = server.api().get("/v1/blobs/" + uri[5:])
    return r


def random_bytes(n, seed):
    """n bytes of every value 0..255, mixed (deterministic per seed)."""
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    out = bytes(out[:n])
    return bytes(range(256)) + out + b"\0\r\n\x1b[2J"


def write_big(path, size):
    """A file of `size` bytes that is not all the same (one 1 MiB block repeated, numbered)."""
    block = random_bytes(1 << 20, "big")[: 1 << 20]
    with open(path, "wb") as f:
        written, i = 0, 0
        while written < size:
            chunk = (i.to_bytes(8, "little") + block)[: min(size - written, len(block) + 8)]
            f.write(chunk)
            written += len(chunk)
            i += 1


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_measured(server, *args, cwd=None):
    """`drover ARGS` with its own rusage (os.wait4): (exit code, stdout, stderr, max RSS bytes)."""
    out_path = os.path.join(cwd, ".measured.out")
    err_path = os.path.join(cwd, ".measured.err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen([BIN] + list(args), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             cwd=cwd, env=server.cli_env())
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path, "rb") as f:
        stdout = f.read().decode()
    with open(err_path, "rb") as f:
        stderr = f.read().decode()
    os.unlink(out_path)
    os.unlink(err_path)
    return p.returncode, stdout, stderr, usage.ru_maxrss * 1024  # Linux: KiB


@pytest.fixture
def work(tmp_path):
    """An empty folder for the test's files (tmp_path also holds the server's data)."""
    w = tmp_path / "work"
    w.mkdir()
    return w


def read_terminal(master, proc, timeout=60):
    """Everything written to a pseudo-terminal until proc ended and it has no more to give."""
    shown = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                piece = os.read(master, 4096)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not piece:
                break
            shown += piece
        elif proc.poll() is not None:
            break
    return shown


def leftovers(folder):
    """Temporary files of get left in a folder (there must be none)."""
    return [n for n in os.listdir(folder) if ".drover-" in n]


# ---- put and get ----


def test_put_get_round_trip_of_binary_content(server, work):
    data = random_bytes(300_000, "round trip")
    src = work / "in.bin"
    src.write_bytes(data)

    out = ok(text(run(server, "put", str(src), "s3://data/sub/dir/in.bin")))
    assert out == "s3://data/sub/dir/in.bin\n"
    r = blob(server, "s3://data/sub/dir/in.bin")
    assert r.status_code == 200 and r.content == data

    dst = work / "out.bin"
    ok(text(run(server, "get", "s3://data/sub/dir/in.bin", str(dst))))
    assert dst.read_bytes() == data
    assert leftovers(work) == []

    # without FILE: the key's last part, in the current folder
    here = work / "here"
    here.mkdir()
    ok(text(run(server, "get", "s3://data/sub/dir/in.bin", cwd=here)))
    assert (here / "in.bin").read_bytes() == data

    # into a folder; an existing file is replaced
    (here / "in.bin").write_bytes(b"old")
    ok(text(run(server, "get", "s3://data/sub/dir/in.bin", str(here))))
    assert (here / "in.bin").read_bytes() == data
    assert leftovers(here) == []
    # the file gets the usual mode (0666 less the umask), not mkstemp's 0600
    mask = os.umask(0)
    os.umask(mask)
    assert (here / "in.bin").stat().st_mode & 0o777 == 0o666 & ~mask


def test_put_json_answer_and_key_completion(server, work):
    data = random_bytes(1000, "json")
    src = work / "named.dat"
    src.write_bytes(data)

    answer = json.loads(ok(text(run(server, "put", "--json", str(src), "s3://data/k1"))))
    assert answer["uri"] == "s3://data/k1"
    assert answer["size"] == len(data)
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()

    # a key ending in '/' (or none) gets the file's name
    assert ok(text(run(server, "put", str(src), "s3://data/folder/"))) == \
        "s3://data/folder/named.dat\n"
    assert ok(text(run(server, "put", str(src), "s3://data"))) == "s3://data/named.dat\n"
    assert blob(server, "s3://data/folder/named.dat").content == data
    assert blob(server, "s3://data/named.dat").content == data

    # standard input has no name to give
    r = text(run(server, "put", "-", "s3://data/folder/", input=b"x"))
    usage_error(r, ["put"])
    assert "s3://data/folder/" in r.stderr


def test_put_from_stdin_pipe_and_file(server, work):
    data = random_bytes(200_000, "stdin")
    # a pipe: spooled so that the upload has a Content-Length
    ok(text(run(server, "put", "-", "s3://data/from-pipe", input=data)))
    assert blob(server, "s3://data/from-pipe").content == data

    # a redirected file is read from where its offset stands
    src = work / "f"
    src.write_bytes(data)
    with open(src, "rb", buffering=0) as f:
        assert len(f.read(1000)) == 1000
        r = subprocess.run([BIN, "put", "-", "s3://data/from-file"], stdin=f,
                           capture_output=True, env=server.cli_env(), timeout=60)
    ok(text(r))
    assert blob(server, "s3://data/from-file").content == data[1000:]

    # empty input is an empty object
    ok(text(run(server, "put", "-", "s3://data/empty", input=b"")))
    r = blob(server, "s3://data/empty")
    assert r.status_code == 200 and r.content == b""
    dst = work / "empty.out"
    ok(text(run(server, "get", "s3://data/empty", str(dst))))
    assert dst.read_bytes() == b""


def test_get_to_stdout(server, work):
    data = random_bytes(500_000, "stdout")
    ok(text(run(server, "put", "-", "s3://data/out.bin", input=data)))
    r = run(server, "get", "s3://data/out.bin", "-", cwd=work)
    assert r.returncode == 0 and r.stderr == b""
    assert r.stdout == data
    assert os.listdir(work) == []


def test_large_file_is_streamed(server, work):
    # The memory of a tiny transfer is the baseline (a sanitizer build starts higher);
    # a 50 MB one may add a few buffers, nowhere near the file.
    (work / "tiny").write_bytes(b"t")
    rc, _, err, base = run_measured(server, "put", "tiny", "s3://data/tiny", cwd=work)
    assert rc == 0, err
    limit = base + 8 * 1024 * 1024

    src = work / "big.bin"
    write_big(src, BIG)
    digest = sha256_file(src)

    rc, out, err, rss = run_measured(server, "put", str(src), "s3://data/big.bin", cwd=work)
    assert rc == 0 and err == "", err
    assert out == "s3://data/big.bin\n"
    assert rss < limit, f"put of {BIG} bytes peaked at {rss} bytes of memory (base {base})"
    head = server.api().head("/v1/blobs/data/big.bin")
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == BIG
    assert head.headers["X-Drover-Sha256"] == digest

    dst = work / "big.out"
    rc, out, err, rss = run_measured(server, "get", "s3://data/big.bin", str(dst), cwd=work)
    assert rc == 0 and err == "" and out == "", err
    assert rss < limit, f"get of {BIG} bytes peaked at {rss} bytes of memory (base {base})"
    assert dst.stat().st_size == BIG and sha256_file(dst) == digest
    assert leftovers(work) == []

    # standard input through a pipe is spooled to a file, not memory
    cat = subprocess.Popen(["cat", str(src)], stdout=subprocess.PIPE)
    p = subprocess.Popen([BIN, "put", "-", "s3://data/big-stdin"], stdin=cat.stdout,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=server.cli_env())
    cat.stdout.close()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    assert cat.wait(timeout=60) == 0
    assert p.returncode == 0
    assert usage.ru_maxrss * 1024 < limit
    head = server.api().head("/v1/blobs/data/big-stdin")
    assert head.headers["X-Drover-Sha256"] == digest


def test_progress_bar_only_on_a_terminal(server, work):
    src = work / "nine.bin"
    write_big(src, 9 << 20)  # over the 8 MiB threshold
    ok(text(run(server, "put", str(src), "s3://data/nine.bin")))  # not a terminal: quiet

    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([BIN, "get", "s3://data/nine.bin", str(work / "nine.out")],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                             env=server.cli_env())
        os.close(slave)
        shown = read_terminal(master, p)
        assert p.wait(timeout=60) == 0
    finally:
        os.close(master)
    line = shown.decode(errors="replace")
    assert "100%" in line and "MiB/s" in line and "9.0 MiB" in line, line
    assert (work / "nine.out").read_bytes() == src.read_bytes()

    # a small object gets no bar even on a terminal
    ok(text(run(server, "put", "-", "s3://data/small", input=b"small")))
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([BIN, "get", "s3://data/small", "-"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=slave, env=server.cli_env())
        os.close(slave)
        out, _ = p.communicate(timeout=60)
        shown = read_terminal(master, p)
    finally:
        os.close(master)
    assert p.returncode == 0 and out == b"small" and shown == b""


# ---- failures ----


def test_get_of_a_missing_object(server, work):
    r = text(run(server, "get", "s3://data/missing.bin", cwd=work))
    err = refused(r)
    assert err == "drover: object 's3://data/missing.bin' not found\n"  # named once, as given
    assert os.listdir(work) == []  # neither the file nor a temporary one

    # an existing target stays as it was
    keep = work / "keep.bin"
    keep.write_bytes(b"precious")
    refused(text(run(server, "get", "s3://data/missing.bin", str(keep))))
    assert keep.read_bytes() == b"precious"
    assert leftovers(work) == []

    # to stdout: nothing written
    r = run(server, "get", "s3://data/missing.bin", "-")
    assert r.returncode == 1 and r.stdout == b""


@pytest.mark.parametrize("cmd", ["put", "get", "ls", "rm"])
@pytest.mark.parametrize("uri,why", [
    ("bucket/key", "not an s3:// URI"),
    ("http://host/key", "not an s3:// URI"),
    ("s3://Upper/key", "bucket"),
    ("s3://b/key", "bucket"),  # too short a bucket
    ("s3://data/a//b", "empty segment"),
    ("s3://data/../etc", "'..'"),
])
def test_bad_uris_are_usage_errors_naming_the_uri(server, work, cmd, uri, why):
    src = work / "f"
    src.write_bytes(b"x")
    args = {"put": ["put", str(src), uri], "get": ["get", uri], "ls": ["ls", uri],
            "rm": ["rm", uri]}[cmd]
    r = text(run(server, *args, cwd=work))
    usage_error(r, [cmd])
    assert f"'{uri}'" in r.stderr and why in r.stderr, r.stderr
    assert os.listdir(work) == ["f"]


@pytest.mark.parametrize("cmd,uri", [
    ("get", "s3://data"), ("get", "s3://data/dir/"), ("rm", "s3://data/dir/"),
    ("put", "s3://data/a\x01b"),
])
def test_uris_that_name_no_object(server, work, cmd, uri):
    src = work / "f"
    src.write_bytes(b"x")
    args = ["put", str(src), uri] if cmd == "put" else [cmd, uri]
    r = text(run(server, *args))
    usage_error(r, [cmd])
    assert "URI" in r.stderr


def test_put_of_a_missing_file_or_a_folder(server, work):
    r = text(run(server, "put", str(work / "nope.txt"), "s3://data/nope.txt"))
    err = refused(r)
    assert str(work / "nope.txt") in err and "No such file" in err
    r = text(run(server, "put", str(work), "s3://data/folder"))
    err = refused(r)
    assert str(work) in err and "folder" in err
    assert blob(server, "s3://data/nope.txt").status_code == 404
    assert blob(server, "s3://data/folder").status_code == 404


def test_server_unreachable(server, work):
    src = work / "f"
    src.write_bytes(b"x")
    env = {"DROVER_SERVER": f"http://127.0.0.1:{free_port()}"}
    for args in (["put", str(src), "s3://data/f"], ["get", "s3://data/f", str(work / "g")],
                 ["ls", "s3://data"], ["rm", "s3://data/f"]):
        err = refused(text(run(server, *args, env=env)))
        assert "cannot reach the drover server" in err, err
    assert sorted(os.listdir(work)) == ["f"]


def test_bad_token_is_refused(server, work):
    src = work / "f"
    src.write_bytes(random_bytes(100_000, "token"))
    err = refused(text(run(server, "put", str(src), "s3://data/f", token="drv_wrong")))
    assert "DROVER_TOKEN" in err
    err = refused(text(run(server, "get", "s3://data/f", str(work / "g"),
                           token="drv_wrong")))
    assert "DROVER_TOKEN" in err
    assert sorted(os.listdir(work)) == ["f"]


def test_interrupted_get_leaves_nothing(server, work):
    ok(text(run(server, "put", "-", "s3://data/slow", input=b"s" * 1000)))
    (work / "slow").write_bytes(b"before")
    # The server is stopped (the kernel still accepts the connection): the get waits.
    server.proc.send_signal(signal.SIGSTOP)
    try:
        p = subprocess.Popen([BIN, "get", "s3://data/slow", str(work / "slow")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=server.cli_env())
        wait_for(lambda: leftovers(work), timeout=20, what="the temporary file")
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert p.returncode == -signal.SIGINT, (p.returncode, err)
    assert sorted(os.listdir(work)) == ["slow"]
    assert (work / "slow").read_bytes() == b"before"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_get_onto_a_full_disk(server, work):
    ok(text(run(server, "put", "-", "s3://data/some", input=random_bytes(100_000, "full"))))
    err = refused(text(run(server, "get", "s3://data/some", "/dev/full")))
    assert "/dev/full" in err and "No space left on device" in err


def test_get_to_a_folder_that_is_not_there(server, work):
    ok(text(run(server, "put", "-", "s3://data/x", input=b"x")))
    err = refused(text(run(server, "get", "s3://data/x", str(work / "no" / "x"))))
    assert err == (f"drover: cannot write '{work / 'no' / 'x'}': there is no folder "
                   f"'{work / 'no'}'\n")
    err = refused(text(run(server, "get", "s3://data/x", str(work / "no" / "deeper" / "x"))))
    assert f"there is no folder '{work / 'no' / 'deeper'}'" in err
    # a trailing '/' means a folder: one that is not there is not taken for a file's name
    err = refused(text(run(server, "get", "s3://data/x", "newdir/", cwd=work)))
    assert err == ("drover: cannot write 'newdir/': there is no folder 'newdir' (a name that "
                   "ends in '/' is a folder's)\n")
    # a file where a folder should be is named, not "Not a directory"
    (work / "f.txt").write_bytes(b"kept")
    for target in ("f.txt/", "f.txt/y", "f.txt/y/z"):
        err = refused(text(run(server, "get", "s3://data/x", target, cwd=work)))
        assert err == f"drover: cannot write '{target}': 'f.txt' is a file, not a folder\n"
    assert sorted(os.listdir(work)) == ["f.txt"] and (work / "f.txt").read_bytes() == b"kept"
    # the same mistakes on put's side
    for source in ("f.txt/", "f.txt/y"):
        err = refused(text(run(server, "put", source, "s3://data/y", cwd=work)))
        assert err == f"drover: cannot read '{source}': 'f.txt' is a file, not a folder\n"
    assert blob(server, "s3://data/y").status_code == 404
    # a folder that is there, with or without its '/', takes the key's last part
    (work / "out").mkdir()
    ok(text(run(server, "get", "s3://data/x", "out/", cwd=work)))
    assert (work / "out" / "x").read_bytes() == b"x"


def test_usage_errors_and_help(server):
    for cmd in ("put", "get", "ls", "rm"):
        help_shown(text(run(server, cmd, "--help")), cmd)
    usage_error(text(run(server, "put")), ["put"])
    usage_error(text(run(server, "put", "f")), ["put"])
    usage_error(text(run(server, "put", "f", "s3://data/k", "extra")), ["put"])
    usage_error(text(run(server, "get")), ["get"])
    usage_error(text(run(server, "get", "s3://data/k", "f", "extra")), ["get"])
    usage_error(text(run(server, "ls", "s3://a", "s3://b")), ["ls"])  # alone: the buckets
    usage_error(text(run(server, "ls", "--limit", "0", "s3://data")), ["ls"])
    usage_error(text(run(server, "rm")), ["rm"])
    usage_error(text(run(server, "get", "--bogus", "s3://data/k")), ["get"])


# ---- ls and rm ----


def test_ls_with_prefix_and_json(server, work):
    sizes = {"run/a.txt": 10, "run/b.txt": 2000, "run2/c.txt": 5, "other/d.txt": 7}
    for key, size in sizes.items():
        ok(text(run(server, "put", "-", f"s3://lsb/{key}", input=b"z" * size)))

    rows = table(ok(text(run(server, "ls", "s3://lsb/run/"))))
    assert rows[0] == ["KEY", "SIZE", "MODIFIED"]
    assert [(r[0], int(r[1])) for r in rows[1:]] == [("run/a.txt", 10), ("run/b.txt", 2000)]
    assert all(re.match(r"\d{4}-\d\d-\d\d$", r[2]) and re.match(r"\d\d:\d\d:\d\d$", r[3])
               for r in rows[1:])

    # a prefix that is not a folder
    rows = table(ok(text(run(server, "ls", "s3://lsb/run"))))
    assert [r[0] for r in rows[1:]] == ["run/a.txt", "run/b.txt", "run2/c.txt"]

    listed = json.loads(ok(text(run(server, "ls", "--json", "s3://lsb"))))
    assert [o["key"] for o in listed] == sorted(sizes)
    for o in listed:
        assert o["size"] == sizes[o["key"]]
        assert o["sha256"] == hashlib.sha256(b"z" * sizes[o["key"]]).hexdigest()

    limited = json.loads(ok(text(run(server, "ls", "--json", "--limit", "2", "s3://lsb"))))
    assert [o["key"] for o in limited] == sorted(sizes)[:2]

    # nothing there: just the header
    assert table(ok(text(run(server, "ls", "s3://lsb/none/")))) == [["KEY", "SIZE", "MODIFIED"]]


def test_rm(server):
    ok(text(run(server, "put", "-", "s3://data/gone.txt", input=b"bye")))
    ok(text(run(server, "put", "-", "s3://data/kept.txt", input=b"stay")))
    assert ok(text(run(server, "rm", "s3://data/gone.txt"))) == "removed s3://data/gone.txt\n"
    assert blob(server, "s3://data/gone.txt").status_code == 404
    assert blob(server, "s3://data/kept.txt").content == b"stay"

    # one missing among several: the others are removed, exit 1 naming the missing one
    ok(text(run(server, "put", "-", "s3://data/gone2.txt", input=b"bye")))
    r = text(run(server, "rm", "s3://data/gone.txt", "s3://data/gone2.txt"))
    assert r.returncode == 1
    assert r.stdout == "removed s3://data/gone2.txt\n"
    assert r.stderr == "drover: object 's3://data/gone.txt' not found\n"
    assert blob(server, "s3://data/gone2.txt").status_code == 404


def test_rm_recursive_removes_what_is_under_a_prefix(server):
    for key in ("run-1/a.txt", "run-1/sub/b.txt", "run-1/c d.txt", "run-10/x.txt", "run-2/y"):
        ok(text(run(server, "put", "-", f"s3://rr/{key}", input=key.encode())))
    # without -r a prefix is refused, saying what -r does
    r = text(run(server, "rm", "s3://rr/run-1/"))
    assert r.returncode == 2 and "drover rm -r s3://rr/run-1/" in r.stderr, r.stderr
    r = text(run(server, "rm", "-r", "s3://rr/run-1/"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("removed s3://rr/run-1/a.txt\nremoved s3://rr/run-1/c d.txt\n"
                        "removed s3://rr/run-1/sub/b.txt\n"), r.stdout
    for key in ("run-1/a.txt", "run-1/sub/b.txt", "run-1/c d.txt"):
        assert blob(server, f"s3://rr/{key}").status_code == 404
    assert blob(server, "s3://rr/run-10/x.txt").content == b"run-10/x.txt"  # not under run-1/
    # nothing under it: a note, exit 0; --json lists what went
    r = text(run(server, "rm", "--recursive", "s3://rr/run-1/"))
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "drover: note: no object under "
                                                         "s3://rr/run-1/\n"), r
    r = text(run(server, "rm", "-r", "--json", "s3://rr"))  # the whole bucket
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"removed": ["s3://rr/run-10/x.txt", "s3://rr/run-2/y"]}


# ---- submit with local files ----


def job_of(server, job_id):
    r = server.api().get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def test_submit_with_local_files(server, work):
    data = random_bytes(123_456, "submit")
    (work / "genome.fa").write_bytes(data)
    r = text(run(server, "submit", "--", "wc", "-c", "@./genome.fa", "@@literal", "@plain",
                 cwd=work))
    job_id = submitted(r).strip()
    assert UUID.match(job_id)

    args = job_of(server, job_id)["spec"]["command"]["arguments"]
    assert [a["type"] for a in args] == ["parameter", "input", "parameter", "parameter"]
    assert args[0]["value"] == "-c"
    assert args[2]["value"] == "@literal" and args[3]["value"] == "@plain"
    uri = args[1]["value"]
    m = re.match(r"^s3://uploads/([0-9a-f-]{36})/genome\.fa$", uri)
    assert m and UUID.match(m.group(1)), uri
    assert blob(server, uri).content == data

    # an absolute path, and one file named twice is uploaded once
    r = text(run(server, "submit", "--json", "--upload-to", "s3://mine/in/", "--", "cmp",
                 f"@{work}/genome.fa", "@./genome.fa", cwd=work))
    args = job_of(server, json.loads(submitted(r))["id"])["spec"]["command"]["arguments"]
    assert [a["value"] for a in args] == ["s3://mine/in/genome.fa"] * 2
    assert blob(server, "s3://mine/in/genome.fa").content == data

    # no @file: the plain argv form as before
    job_id = submitted(text(run(server, "submit", "--", "echo", "@@x"))).strip()
    args = job_of(server, job_id)["spec"]["command"]["arguments"]
    assert [(a["type"], a["value"]) for a in args] == [("parameter", "@x")]


def test_submit_with_objects_as_inputs_and_outputs(server, work, make_agent):
    """After --, @s3://B/K is an input (downloaded, its local path passed) and
    @out:s3://B/K an output (uploaded after the run), as typed arguments; with an array,
    {{item}} names each task's objects."""
    make_agent(server, "w1")
    (work / "in.txt").write_bytes(b"hello\n")
    ok(text(run(server, "put", "in.txt", "s3://db/in.txt", cwd=work)))
    r = text(run(server, "submit", "--wait", "--", "sh", "-c", 'tr a-z A-Z < "$1" > "$2"', "sh",
                 "@s3://db/in.txt", "@out:s3://res/up.txt"))
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.splitlines()[0]
    args = job_of(server, job_id)["spec"]["command"]["arguments"]
    assert [(a["type"], a["value"]) for a in args[3:]] == [
        ("input", "s3://db/in.txt"), ("output", "s3://res/up.txt")], args
    assert blob(server, "s3://res/up.txt").content == b"HELLO\n"
    # an array: one task per line, each reading and writing objects named by its item
    for name in ("a", "b"):
        (work / f"{name}.txt").write_text(f"{name * 3}\n")
        ok(text(run(server, "put", f"{name}.txt", f"s3://db/{name}.txt", cwd=work)))
    r = text(run(server, "submit", "--wait", "--array-items", "-", "--", "cp",
                 "@s3://db/{{item}}.txt", "@out:s3://res/copy-{{item}}.txt", input=b"a\nb\n"))
    assert r.returncode == 0, r.stderr
    assert blob(server, "s3://res/copy-a.txt").content == b"aaa\n"
    assert blob(server, "s3://res/copy-b.txt").content == b"bbb\n"
    # --array-objects: one task per object under the prefix, @{{item}} the object as input
    r = text(run(server, "submit", "--wait", "--json", "--array-objects", "s3://db/",
                 "--", "wc", "-c", "@{{item}}"))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert (got["kind"], got["source"], got["count"]) == ("objects", "s3://db/", 3), got
    tasks = server.api().get(f"/v1/arrays/{got['id']}/tasks").json()["tasks"]
    outs = sorted(job_of(server, t["job"])["result"]["stdout"].split()[0] for t in tasks)
    assert outs == ["4", "4", "6"], outs  # aaa, bbb, hello
    err = refused(text(run(server, "submit", "--array-objects", "s3://db/none/", "--", "true")))
    assert "array.objects" in err and "no object under 's3://db/none/'" in err, err
    for args in (["--array-objects", "ftp://db/"], ["--array-objects", "s3://db/",
                                                    "--array", "2"]):
        usage_error(text(run(server, "submit", *args, "--", "true")), ["submit"] + args)
    # bad input: refused, nothing submitted
    before = len(server.api().get("/v1/jobs").json()["jobs"])
    err = refused(text(run(server, "submit", "--", "cat", "@out:x.txt")))
    assert "'@out:x.txt': an output is @out:s3://BUCKET/KEY" in err, err
    assert "or @out:./PATH (with --wait" in err, err
    err = refused(text(run(server, "submit", "--", "cat", "@s3://Bad_Bucket/x")))
    assert "command.arguments[0].value" in err, err
    assert len(server.api().get("/v1/jobs").json()["jobs"]) == before
    # @@ still passes them as text
    job_id = submitted(text(run(server, "submit", "--", "echo", "@@s3://db/in.txt",
                                "@@out:x"))).strip()
    assert job_of(server, job_id)["spec"]["command"]["arguments"] == [
        {"type": "parameter", "name": None, "value": "@s3://db/in.txt"},
        {"type": "parameter", "name": None, "value": "@out:x"}]


def test_submit_with_local_outputs(server, work, make_agent):
    """After --, @out:./PATH is an output stored beside the uploads: --wait downloads it to
    PATH once the job has succeeded; a failed job leaves PATH as it was. What could not be
    written is refused before anything is uploaded or submitted."""
    make_agent(server, "w1")
    (work / "names.txt").write_text("b\na\nc\n")
    (work / "sub").mkdir()
    r = text(run(server, "submit", "--wait", "--", "sort", "-o", "@out:./sub/sorted.txt",
                 "@./names.txt", cwd=work))
    assert r.returncode == 0, r.stderr
    assert (work / "sub" / "sorted.txt").read_text() == "a\nb\nc\n"
    assert not [p for p in os.listdir(work / "sub") if p != "sorted.txt"]  # no temporary file
    args = job_of(server, r.stdout.splitlines()[0])["spec"]["command"]["arguments"]
    up_in, up_out = args[2]["value"], args[1]["value"]
    assert (args[1]["type"], args[2]["type"]) == ("output", "input"), args
    uuid = UUID.pattern.strip("^$")
    assert re.fullmatch(r"s3://uploads/" + uuid + r"/sorted\.txt", up_out), up_out
    assert up_out.rsplit("/", 1)[0] == up_in.rsplit("/", 1)[0]  # beside the upload
    assert blob(server, up_out).content == b"a\nb\nc\n"
    # under --upload-to, with --json: the job's JSON on stdout, the file written all the same
    r = text(run(server, "submit", "--wait", "--json", "--upload-to", "s3://mine/run1", "--",
                 "sh", "-c", 'tr a-z A-Z < "$1" > "$2"', "sh", "@./names.txt",
                 "@out:./upper.txt", cwd=work))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "succeeded"
    assert (work / "upper.txt").read_text() == "B\nA\nC\n"
    assert blob(server, "s3://mine/run1/upper.txt").content == b"B\nA\nC\n"
    # a job that fails: its exit code, the file not written, and why on stderr
    (work / "kept.txt").write_text("as it was\n")
    r = text(run(server, "submit", "--wait", "--attempts", "1", "--", "sh", "-c",
                 'echo new > "$1"; exit 3', "sh", "@out:./kept.txt", cwd=work))
    assert r.returncode == 3, r.stderr
    assert "drover: note: output './kept.txt' was not written: the job failed" in r.stderr, r.stderr
    assert (work / "kept.txt").read_text() == "as it was\n"
    # a download that cannot be written: exit 1, and where the output is kept
    (work / "gone").mkdir()
    r = text(run(server, "submit", "--wait", "--", "sh", "-c", 'rm -r "$0"; echo out > "$1"',
                 str(work / "gone"), "@out:./gone/o.txt", cwd=work))
    assert r.returncode == 1, r.stderr
    kept = re.search(r"drover: note: output './gone/o.txt' is kept as (s3://\S+/o\.txt) "
                     r"\(drover get \1 PATH\)", r.stderr)
    assert kept and "cannot write" in r.stderr, r.stderr
    assert blob(server, kept.group(1)).content == b"out\n"
    # bad input: refused, nothing uploaded or submitted
    before = len(server.api().get("/v1/jobs").json()["jobs"])
    for args, why in (
            (["--wait", "--", "sort", "-o", "@out:./names.txt", "@./names.txt"],
             "'./names.txt' is both an input and an output (@out:./names.txt)"),
            (["--wait", "--", "cp", "@./names.txt", "@out:./none/x.txt"],
             "cannot write output './none/x.txt' into './none': No such file or directory"),
            (["--wait", "--", "cp", "@./names.txt", "@out:./sub"],
             "output './sub' is a folder; an output is a file"),
            (["--wait", "--", "cp", "@./names.txt", "@out:./sub/"],
             "output './sub/' is a folder; an output is a file"),
            (["--wait", "--", "cat", "@./sub/sorted.txt", "@out:./sorted.txt"],
             "'./sub/sorted.txt' and './sorted.txt' would both be 'sorted.txt'"),
            (["--wait", "--", "cp", "@./names.txt", "@out:./names.txt/x"],
             "cannot write output './names.txt/x' into './names.txt': not a folder")):
        err = refused(text(run(server, "submit", *args, cwd=work)))
        assert why in err, (args, err)
    for args, why in ((["--", "cp", "@./names.txt", "@out:./copy.txt"], "give --wait"),
                      (["--wait", "--array", "2", "--", "cp", "@./names.txt", "@out:./c.txt"],
                       "the tasks of an array, or several specs, would all write it")):
        r = text(run(server, "submit", *args, cwd=work))
        usage_error(r, ["submit"] + args)
        assert why in r.stderr, (args, r.stderr)
    # in a spec file: an output argument's "@path"; one spec only, with --wait
    one = {"command": {"program": "cp", "arguments": [
        {"type": "input", "value": "@names.txt"}, {"type": "output", "value": "@copy.txt"}]}}
    for spec, args, why in ((one, [], "give --wait"),
                            ([one], ["--wait"], "several specs, would all write it"),
                            ({**one, "array": {"count": 2}}, ["--wait"], "would all write it")):
        (work / "spec.json").write_text(json.dumps(spec))
        r = text(run(server, "submit", *args, "-f", "spec.json", cwd=work))
        usage_error(r, ["submit"])
        assert why in r.stderr, (spec, r.stderr)
    assert len(server.api().get("/v1/jobs").json()["jobs"]) == before
    assert not (work / "copy.txt").exists() and not (work / "c.txt").exists()
    (work / "spec.json").write_text(json.dumps(one))
    r = text(run(server, "submit", "--wait", "-f", "spec.json", cwd=work))
    assert r.returncode == 0, r.stderr
    assert (work / "copy.txt").read_text() == "b\na\nc\n"
    args = job_of(server, r.stdout.splitlines()[0])["spec"]["command"]["arguments"]
    assert args[1]["value"].startswith("s3://uploads/") and \
        args[1]["value"].endswith("/copy.txt"), args
    listed = json.loads(ok(text(run(server, "ls", "--json", "s3://uploads/"))))
    # the folders of the first job, of the one whose download failed and of the last: the
    # second's went under --upload-to, the failed job uploaded nothing, and the refused
    # ones were stopped before their uploads
    assert len({o["key"].split("/")[0] for o in listed}) == 3, listed


def test_submit_spec_file_with_local_files(server, work):
    (work / "a.txt").write_bytes(b"A" * 100)
    (work / "sub").mkdir()
    (work / "sub" / "b.txt").write_bytes(b"B" * 200)
    (work / "c.txt").write_bytes(b"C" * 300)
    spec = {"command": {"program": "cat",
                        "arguments": [{"type": "input", "name": "--in", "value": "@a.txt"},
                                      {"type": "parameter", "value": "@a.txt"},
                                      {"type": "input", "value": "s3://data/already"}],
                        "input": ["@sub/b.txt"],
                        "stdin": {"type": "uri", "value": "@./c.txt"}}}
    (work / "spec.json").write_text(json.dumps(spec))
    job_id = submitted(text(run(server, "submit", "--upload-to", "s3://specs", "-f", "spec.json",
                         cwd=work))).strip()
    cmd = job_of(server, job_id)["spec"]["command"]
    assert [a["value"] for a in cmd["arguments"]] == ["s3://specs/a.txt", "@a.txt",
                                                      "s3://data/already"]
    assert cmd["input"] == ["s3://specs/1/b.txt"]  # a prefix: in a folder of its own
    assert cmd["stdin"]["value"] == "s3://specs/c.txt"
    assert blob(server, "s3://specs/a.txt").content == b"A" * 100
    assert blob(server, "s3://specs/1/b.txt").content == b"B" * 200
    assert blob(server, "s3://specs/c.txt").content == b"C" * 300


def test_submit_local_file_errors(server, work):
    (work / "one").mkdir()
    (work / "two").mkdir()
    (work / "one" / "x").write_bytes(b"1")
    (work / "two" / "x").write_bytes(b"2")

    err = refused(text(run(server, "submit", "--", "cat", "@./missing.txt", cwd=work)))
    assert "./missing.txt" in err and "No such file" in err
    err = refused(text(run(server, "submit", "--", "cat", "@./one", cwd=work)))
    assert "'./one'" in err and "folder" in err
    err = refused(text(run(server, "submit", "--", "cmp", "@./one/x", "@./two/x", cwd=work)))
    assert "./one/x" in err and "./two/x" in err
    r = text(run(server, "submit", "--upload-to", "ftp://x", "--", "cat", "@./one/x"))
    usage_error(r, ["submit"])
    assert "ftp://x" in r.stderr

    # nothing was submitted or uploaded
    assert server.api().get("/v1/jobs").json()["jobs"] == []
    listed = server.api().get("/v1/blobs/uploads")
    assert listed.status_code == 404 or listed.json()["objects"] == []


def test_submit_failure_names_the_uploaded_objects(server, work):
    (work / "in.txt").write_bytes(b"kept")
    # a refusal only the server can make, after the upload: the tenant's queue is full
    api = server.api()
    assert api.put("/v1/tenants/admin", json={"max_queued": 1}).status_code == 200
    first = api.post("/v1/jobs", json={"command": {"program": "/bin/true"}})
    assert first.status_code == 201, first.text
    r = text(run(server, "submit", "--upload-to", "s3://left/over", "--", "cat", "@./in.txt",
                 cwd=work))
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0].startswith("drover: cannot submit the job") and "max_queued" in lines[0]
    assert "s3://left/over/in.txt" in lines[1] and "drover rm" in lines[1]
    assert blob(server, "s3://left/over/in.txt").content == b"kept"
    assert [j["id"] for j in api.get("/v1/jobs").json()["jobs"]] == [first.json()["id"]]


def test_submit_spec_file_input_prefix_matches_its_file_only(server, work, make_agent):
    # "@./data" as a command.input prefix must not also match the uploaded "data.idx"
    make_agent(server, "w1")
    (work / "data").write_bytes(b"D" * 10)
    (work / "data.idx").write_bytes(b"I" * 3)
    (work / "data2").write_bytes(b"E" * 4)
    spec = {"retry": {"max_attempts": 1},
            "command": {"program": "sh", "arguments": [
                {"type": "parameter", "value": "-c"}, {"type": "parameter", "value": "ls"},
                {"type": "parameter", "value": "sh"}, {"type": "input", "value": "@./data.idx"}],
                "input": ["@./data", "@./data2"]}}
    (work / "spec.json").write_text(json.dumps(spec))
    r = text(run(server, "submit", "--json", "-f", "spec.json", cwd=work))
    job_id = json.loads(ok(r))["id"]
    deadline = time.monotonic() + 60
    while job_of(server, job_id)["state"] not in ("succeeded", "failed", "cancelled") \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    j = job_of(server, job_id)
    assert j["state"] == "succeeded", j
    assert j["result"]["stdout"] == "data\ndata.idx\ndata2\n"
    cmd = j["spec"]["command"]
    base = cmd["arguments"][3]["value"].rsplit("/", 1)[0]
    assert cmd["input"] == [f"{base}/1/data", f"{base}/2/data2"]


def test_get_to_a_name_near_the_limit(server, work):
    ok(text(run(server, "put", "-", "s3://data/long", input=b"long name")))
    name = "é" * 100 + "x" * 51  # 251 bytes: the temporary name must still fit
    ok(text(run(server, "get", "s3://data/long", str(work / name))))
    assert (work / name).read_bytes() == b"long name"
    assert leftovers(work) == []


def test_get_json_to_a_name_that_is_not_utf8(server, work):
    """--json names the path it wrote; a path that is not UTF-8 is null (it once crashed)."""
    ok(text(run(server, "put", "-", "s3://data/bytes", input=b"raw")))
    name = b"n\xff.txt"
    r = subprocess.run([BIN, "get", "--json", "s3://data/bytes", name], capture_output=True,
                       cwd=work, env=server.cli_env(None, None), timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert (got["uri"], got["path"], got["size"]) == ("s3://data/bytes", None, 3), got
    assert got["sha256"] == hashlib.sha256(b"raw").hexdigest()
    assert open(os.path.join(bytes(work), name), "rb").read() == b"raw"


def fd_open(pid, path):
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_put_of_a_file_that_grows_while_it_is_uploaded(server, work):
    src = work / "growing.bin"
    write_big(src, 20 * 1000 * 1000)
    # The server is stopped (the kernel still accepts the connection): the put waits with the
    # file open, it grows, then the server goes on.
    server.proc.send_signal(signal.SIGSTOP)
    try:
        p = subprocess.Popen([BIN, "put", str(src), "s3://data/growing.bin"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=server.cli_env())
        wait_for(lambda: fd_open(p.pid, src), timeout=20, what="put to open the file")
        time.sleep(0.3)
        with open(src, "ab") as f:
            f.write(b"more" * 1000)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1, (out, err)
    err = err.decode()
    assert "changed while it was uploaded" in err and str(src) in err, err
    assert "s3://data/growing.bin" in err and "may not match" in err, err
    assert out == b""
