#!/usr/bin/env python3
"""bench/runners.py - per-job overhead of `/bin/true` through the agent's runners (issue 10).

    python3 bench/runners.py [BUILD_DIR] [--rounds N] [--keep]     (BUILD_DIR defaults to ./build)

Starts `drover server` (--sync normal) and one agent with one slot and the runtimes native,
bwrap and podman (podman with runc and cgroupfs through --engine-opt, and its own
configuration, image store, locks and exit files in a folder of its own in $TMPDIR: vfs
storage, no registry). It makes a
local image the way tests/e2e/podmanutil.py does (`podman import` of a tarball of Debian's
busybox-static). Then, in N rounds so that the machine's drift hits every system alike, one
after the other:

- drover jobs, each timed from sending the submit until `GET /v1/jobs/{id}/wait` answers
  `succeeded`: `/bin/true` native, with `command.sandbox: true` (bwrap) and with
  `command.image` (podman), and with `command.image` and `"network": false`;
- the references, the engines run directly in a loop (subprocess, waited): `/bin/true`;
  `bwrap` with the runner's own arguments (src/agent/runner_bwrap.c), without
  `--unshare-net`, and with `--ro-bind / /` only; `podman run --rm` with the runner's arguments
  (src/agent/runner_container.c), and with `--network none`; and the runner's own sequence
  of podman commands by hand, each phase timed: `image exists`, `run --name` (no --rm),
  `inspect --format {{.State.OOMKilled}}`, `rm -f`.

Prints a markdown report on stdout (progress on stderr). Every process started here is stopped
by its PID; every loop is bounded by its count and every wait by a timeout. Needs bubblewrap,
podman, runc and busybox-static (scripts/deps.sh test). About a minute on 2 cores.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

from benchutil import Bench, log, machine, pct

BUSYBOX = "/bin/busybox"
IMAGE = "localhost/drover-bench/busybox:1"
ENGINE_OPTS = ["--runtime=runc", "--cgroup-manager=cgroupfs"]


def podman_env(d):
    return dict(os.environ, CONTAINERS_CONF=os.path.join(d, "containers.conf"),
                CONTAINERS_STORAGE_CONF=os.path.join(d, "storage.conf"),
                CONTAINERS_REGISTRIES_CONF=os.path.join(d, "registries.conf"))


def podman_setup(d):
    """podman's configuration in d and the image made and imported."""
    # d is its own folder in $TMPDIR, not the work folder: with a run root of 52 characters
    # or more (45 was fine) every `podman run` of podman 4.3 here waits 20 s after the
    # container ended (its debug log: "Exceeded conmon timeout"); RESULTS.md, issue 10.
    if len(os.path.join(d, "run")) > 45:
        sys.exit(f"bench: podman's run root {d}/run would be longer than 45 characters "
                 "(each container would wait 20 s): set TMPDIR to a shorter folder")
    with open(os.path.join(d, "containers.conf"), "w") as f:
        # lock_type and tmp_dir: this run's own locks and exit files, not the ones every
        # rootful podman store on the machine shares (/dev/shm/libpod_lock, /run/libpod)
        f.write('[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'
                f'events_logger = "file"\nlock_type = "file"\ntmp_dir = "{d}/tmp"\n'
                '[containers]\ndefault_ulimits = []\n')
    with open(os.path.join(d, "storage.conf"), "w") as f:
        f.write(f'[storage]\ndriver = "vfs"\ngraphroot = "{d}/graph"\nrunroot = "{d}/run"\n')
    with open(os.path.join(d, "registries.conf"), "w") as f:
        f.write("unqualified-search-registries = []\n")
    env = podman_env(d)
    root = os.path.join(d, "rootfs")
    os.makedirs(os.path.join(root, "bin"))
    os.makedirs(os.path.join(root, "tmp"))
    subprocess.run(["cp", "-p", BUSYBOX, os.path.join(root, "bin", "busybox")], check=True)
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for name in applets:
        if name != "busybox" and "/" not in name:
            os.symlink("busybox", os.path.join(root, "bin", name))
    tar = os.path.join(d, "rootfs.tar")
    with tarfile.open(tar, "w") as t:
        t.add(root, arcname=".")
    podman(env, d, "import", "--change", "ENV=PATH=/bin", tar, IMAGE)
    return env, d


def podman(env, cwd, *args, timeout=120):
    r = subprocess.run(["podman", *ENGINE_OPTS, *args], env=env, cwd=cwd, capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        sys.exit(f"bench: podman {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r


def timed(argv, env=None, cwd=None, timeout=60):
    t0 = time.monotonic()
    r = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    t1 = time.monotonic()
    if r.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} exited {r.returncode}: {r.stderr.decode()[-2000:]}")
    return t1 - t0


def bwrap_args(agent_dir, work_dir, unshare_net=True):
    """The sandbox runner's command line (src/agent/runner_bwrap.c, bwrap_argv)."""
    a = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
         "--unshare-cgroup-try", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
         "--tmpfs", "/tmp", "--tmpfs", agent_dir, "--bind", work_dir, work_dir,
         "--chdir", work_dir]
    if unshare_net:
        a.append("--unshare-net")
    return a + ["--", "/bin/true"]


def run_args(name, work_dir, network_none=False):
    """The container runner's `run` (src/agent/runner_container.c, container_start)."""
    a = ["run", "--name", name, "-i", "--pull", "never", "-v", f"{work_dir}:{work_dir}",
         "-w", work_dir]
    if network_none:
        a += ["--network", "none"]
    for v in ("DROVER_JOB_ID", "DROVER_ATTEMPT", "DROVER_WORK_DIR", "DROVER_PROGRESS"):
        a += ["--env", v]
    return a


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    for tool in ("bwrap", "podman", "runc"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            sys.exit(f"bench: {tool} is not installed (scripts/deps.sh test)")
    if not os.path.exists(BUSYBOX):
        sys.exit("bench: busybox-static is not installed (scripts/deps.sh test)")
    b = Bench(args.build, "bench-runners", keep=args.keep)
    failed = True
    pdir = tempfile.mkdtemp(prefix="drover-bench-podman.")
    env = podman_env(pdir)
    try:
        before = machine(b.work)
        env, pdir = podman_setup(pdir)
        log("image imported; starting the server and the agent")
        b.server()
        eng = [f"--engine-opt={o}" for o in ENGINE_OPTS]
        b.agent("runners", "--runtime", "native,bwrap,podman", *eng, "--slots", "1", env=env)
        runtimes = b.agent_info("runners")["runtimes"]
        if runtimes != ["native", "bwrap", "podman"]:
            sys.exit(f"bench: the agent offers {runtimes}")
        # the direct references get a folder like a job's: an agent folder hidden by a
        # tmpfs, a work folder inside it bound read-write
        adir = os.path.join(b.work, "direct")
        wdir = os.path.join(adir, "job")
        os.makedirs(wdir)

        specs = {
            "drover native": {"program": "/bin/true"},
            "drover bwrap": {"program": "/bin/true", "sandbox": True},
            "drover podman": {"program": "/bin/true", "image": IMAGE},
            "drover podman, network: false": {"program": "/bin/true", "image": IMAGE,
                                              "network": False},
        }
        t = {k: [] for k in list(specs) + [
            "true", "bwrap", "bwrap, no --unshare-net", "bwrap --ro-bind / / only",
            "podman run --rm",
            "podman run --rm --network none", "podman image exists", "podman run --name",
            "podman inspect", "podman rm -f", "podman sequence"]}
        dur = {k: [] for k in specs}
        n_fast, n_podman = 12, 3
        seq = 0
        # one unmeasured warm-up of each (the first container of a store is slower)
        for k, spec in specs.items():
            b.run_job({"queue": "default", "command": spec})
        timed(bwrap_args(adir, wdir))
        podman(env, pdir, *run_args("warm", wdir), "--rm", IMAGE, "/bin/true")
        for r in range(args.rounds):
            log(f"round {r + 1}/{args.rounds}")
            for k in ("drover native", "drover bwrap"):
                for _ in range(n_fast):
                    s, j = b.run_job({"queue": "default", "command": specs[k]})
                    t[k].append(s)
                    dur[k].append(j["result"]["duration_ms"])
            for _ in range(n_fast):
                t["true"].append(timed(["/bin/true"]))
                t["bwrap"].append(timed(bwrap_args(adir, wdir)))
                t["bwrap, no --unshare-net"].append(timed(bwrap_args(adir, wdir, False)))
                t["bwrap --ro-bind / / only"].append(timed(["bwrap", "--ro-bind", "/", "/",
                                                            "/bin/true"]))
            for _ in range(n_podman):
                for k in ("drover podman", "drover podman, network: false"):
                    s, j = b.run_job({"queue": "default", "command": specs[k]})
                    t[k].append(s)
                    dur[k].append(j["result"]["duration_ms"])
                pm = ["podman", *ENGINE_OPTS]
                seq += 1
                t["podman run --rm"].append(timed(
                    pm + run_args(f"bench-rm-{seq}", wdir) + ["--rm", IMAGE, "/bin/true"],
                    env, pdir))
                t["podman run --rm --network none"].append(timed(
                    pm + run_args(f"bench-nonet-{seq}", wdir, True) + ["--rm", IMAGE,
                                                                        "/bin/true"],
                    env, pdir))
                name = f"bench-seq-{seq}"
                phases = [("podman image exists", ["image", "exists", IMAGE]),
                          ("podman run --name", run_args(name, wdir) + [IMAGE, "/bin/true"]),
                          ("podman inspect", ["inspect", "--format", "{{.State.OOMKilled}}",
                                              name]),
                          ("podman rm -f", ["rm", "-f", name])]
                total = 0.0
                for k, a in phases:
                    s = timed(pm + a, env, pdir)
                    t[k].append(s)
                    total += s
                t["podman sequence"].append(total)
        after = machine(b.work)
        failed = False
    finally:
        # podman's folder, whatever happened
        subprocess.run(["podman", *ENGINE_OPTS, "rm", "-a", "-f"], env=env, cwd=pdir,
                       capture_output=True, timeout=120)
        # the store's files may belong to the user namespace's other ids
        subprocess.run(["podman", "unshare", "rm", "-rf", os.path.join(pdir, "graph"),
                        os.path.join(pdir, "run"), os.path.join(pdir, "tmp")], env=env,
                       cwd="/", capture_output=True, timeout=120)
        shutil.rmtree(pdir, ignore_errors=True)
        b.close(failed)

    ms = {k: statistics.median(v) * 1000 for k, v in t.items()}
    print(f"## Runners: per-job overhead of `/bin/true` "
          f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    print(f"- `python3 bench/runners.py {args.build} --rounds {args.rounds}`")
    print(f"- before: {before}")
    print(f"- after: {after}")
    v = subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip()
    bv = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()
    rv = subprocess.run(["runc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"- {v} (runc, cgroupfs, vfs storage, image imported from busybox-static); {bv}; {rv}")
    print("- one agent, 1 slot, `--runtime native,bwrap,podman`; jobs one after the other, "
          "submit -> `/wait` answers succeeded\n")
    print("| figure | n | median ms | p90 ms | min ms | agent's duration_ms (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, v in t.items():
        d = f"{statistics.median(dur[k]):.0f}" if k in dur else "-"
        print(f"| {k} | {len(v)} | {ms[k]:.1f} | {pct(v, 90) * 1000:.1f} | "
              f"{min(v) * 1000:.1f} | {d} |")
    print("\n| comparison (medians, same run) | ratio | difference ms |")
    print("|---|---:|---:|")
    for a, c in (("drover bwrap", "bwrap"), ("drover podman", "podman run --rm"),
                 ("drover podman, network: false", "podman run --rm --network none"),
                 ("drover podman", "podman sequence"), ("drover native", "true"),
                 ("drover bwrap", "drover native"), ("drover podman", "drover native")):
        print(f"| {a} / {c} | {ms[a]:.1f} / {ms[c]:.1f} = **{ms[a] / ms[c]:.2f}x** | "
              f"{ms[a] - ms[c]:+.1f} |")
    print("\n| what a runner adds (medians, ms) | through drover: runner - native | "
          "direct: engine - true | ratio |")
    print("|---|---:|---:|---:|")
    for a, c in (("bwrap", "bwrap"), ("podman", "podman run --rm"),
                 ("podman", "podman sequence")):
        d1 = ms[f"drover {a}"] - ms["drover native"]
        d2 = ms[c] - ms["true"]
        print(f"| {a} (direct: {c}) | {d1:.1f} | {d2:.1f} | **{d1 / d2:.2f}x** |")


if __name__ == "__main__":
    main()
