"""Serverless vs provisioned, on the slim serve image: cold start and memory of the container itself.

SageMaker Serverless Inference cold-starts containers on demand and caps their memory at one of six
sizes (1024 to 6144 MB); a provisioned endpoint keeps instances warm and runs one worker per vCPU.
This runs the ``serve`` image under Docker the way both would, in one run, taking turns:

- **cold start**: wall time from ``docker run ... serve`` to the first ``/ping`` 200 (and to the first
  answered ``/invocations``), several times per configuration: median and max;
- **memory**: the container's cgroup (v1 ``memory.stat`` rss and cache, ``memory.usage_in_bytes``,
  ``memory.max_usage_in_bytes``; v2 ``memory.current``/``memory.peak``), idle after the first answer
  and under a short mixed load (one short text, 8 short texts, 32 long texts truncated to 128 tokens);
- **configurations**: 1 worker (what ``ops deploy --serverless`` gives the container, AWS's advice) and
  the provisioned defaults (one worker per CPU: 2 on this machine, 4 on an ml.c6i.xlarge), without a
  limit and with ``--memory`` equal to Serverless sizes, where a configuration "works" if every start
  answers ``/ping``, every request of the load is answered 200 and the kernel killed nothing.

What a local ``docker run`` cannot show: SageMaker's own provisioning, the image pull and the model
download, all part of a real serverless cold start (CloudWatch ``OverheadLatency``), and Serverless's
vCPU share per memory size (not published). The figures are the container's part of the bill.

The model is the one the server benchmark serves: MiniLM-L6 exported INT8 (128 tokens), fine-tuned
on SST-2 when bench/quality.py has run, else with a random head (memory and start-up do not depend on
the weights). The image is the ``serve`` target of a commit (``--commit``, default HEAD, built from
``git archive`` on the container tests' Debian base: the working tree's edits stay out), or any
existing image (``--image``). Docker: ``TEXTCLF_DOCKER_HOST``, or a dockerd of its own
(scripts/docker_images.py).

    .venv/bin/python bench/serverless.py --reps 5 --load-seconds 5
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib as bl
import server_load as sl

sys.path.insert(0, str(bl.REPO / "scripts"))
import docker_images as di  # scripts/ is not a package: on the path above

SERVERLESS_SIZES_MB = (1024, 2048, 3072, 4096, 5120, 6144)
# name: (workers, --memory in MB or None); workers 0 = the container's default (one per CPU it sees)
CONFIGS: dict[str, tuple[int, int | None]] = {
    "w1": (1, None),
    "default": (0, None),
    "w4": (4, None),
    "w1-1024": (1, 1024),
    "w1-2048": (1, 2048),
    "w4-1024": (4, 1024),
    "w4-2048": (4, 2048),
}
JSON = {"Content-Type": "application/json"}
CGROUP_V1 = Path("/sys/fs/cgroup/memory/docker")
CGROUP_V2 = Path("/sys/fs/cgroup/system.slice")


@dataclass
class Memory:
    """One reading of a container's memory (MB); ``rss`` is anonymous memory, ``usage`` adds the page cache."""

    rss: float
    usage: float
    peak: float


class Cgroup:
    """The container's memory cgroup, read from the host (v1 or v2), else through ``docker exec``."""

    def __init__(self, docker: di.Docker, cid: str) -> None:
        self.docker, self.cid = docker, cid
        v2 = CGROUP_V2 / f"docker-{cid}.scope"
        self.dir = CGROUP_V1 / cid if (CGROUP_V1 / cid).is_dir() else v2 if v2.is_dir() else None
        self.v2 = self.dir is not None and self.dir == v2

    def _read(self, name: str) -> str:
        if self.dir is not None:
            return (self.dir / name).read_text()
        base = "/sys/fs/cgroup" if self.v2 else "/sys/fs/cgroup/memory"
        return self.docker.run("exec", self.cid, "cat", f"{base}/{name}", timeout=10).stdout

    def stat(self) -> dict[str, int]:
        return {k: int(v) for k, v in (line.split() for line in self._read("memory.stat").splitlines())}

    def memory(self) -> Memory:
        mb = 2**20
        if self.v2:
            stat = self.stat()
            usage = int(self._read("memory.current"))
            peak = int(self._read("memory.peak")) if self.dir and (self.dir / "memory.peak").exists() else usage
            return Memory(stat["anon"] / mb, usage / mb, peak / mb)
        stat = self.stat()
        usage = int(self._read("memory.usage_in_bytes"))
        return Memory(stat["total_rss"] / mb, usage / mb, int(self._read("memory.max_usage_in_bytes")) / mb)

    def oom_kills(self) -> int:
        """Processes the kernel killed in this cgroup for memory (v1 ``oom_control``, v2 ``memory.events``)."""
        text = self._read("memory.events" if self.v2 else "memory.oom_control")
        return sum(int(v) for k, v in (line.split() for line in text.splitlines()) if k == "oom_kill")


class Container:
    """``docker run -d ... serve`` of the serve image on a loopback port, removed again on exit."""

    def __init__(self, docker: di.Docker, image: str, model_dir: Path, workers: int, memory_mb: int | None) -> None:
        self.docker, self.port = docker, sl.free_port()
        self.args = ["run", "-d", "--network", "host", "-e", f"SAGEMAKER_BIND_TO_PORT={self.port}"]
        if workers:
            self.args += ["-e", f"MODEL_SERVER_WORKERS={workers}"]
        if memory_mb:  # --memory-swap equal to --memory: no swap to fall back on, as in Serverless
            self.args += ["--memory", f"{memory_mb}m", "--memory-swap", f"{memory_mb}m"]
        self.args += ["-v", f"{model_dir}:/opt/ml/model:ro", image, "serve"]
        self.cid = ""

    def start(self) -> float:
        """Run it; returns the monotonic time just before ``docker run``."""
        t0 = time.monotonic()
        self.cid = self.docker.run(*self.args, timeout=60).stdout.strip()
        return t0

    def running(self) -> bool:
        return self.docker.run("inspect", "-f", "{{.State.Running}}", self.cid, check=False).stdout.strip() == "true"

    def state(self) -> dict[str, Any]:
        state = self.docker.inspect(self.cid)["State"]
        return {k: state.get(k) for k in ("Status", "OOMKilled", "ExitCode")}

    def logs(self) -> str:
        proc = self.docker.run("logs", "--tail", "30", self.cid, check=False)
        return (proc.stdout + proc.stderr)[-3000:]

    def remove(self) -> None:
        if self.cid:
            self.docker.run("rm", "-f", self.cid, check=False, timeout=60)


def request(port: int, method: str, path: str, body: bytes = b"", timeout: float = 30.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body else {}
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_ready(container: Container, t0: float, body: bytes, limit_s: float) -> tuple[float | None, float | None]:
    """Seconds from ``t0`` to the first ``/ping`` 200 and to the first ``/invocations`` 200 (None: never)."""
    while time.monotonic() - t0 < limit_s:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if request(container.port, "GET", "/ping", timeout=2) == 200:
                ping = time.monotonic() - t0
                status = request(container.port, "POST", "/invocations", body)
                return ping, (time.monotonic() - t0 if status == 200 else None)
        if not container.running():
            return None, None
        time.sleep(0.02)
    return None, None


def load(port: int, bodies: list[bytes], concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` keep-alive clients posting ``bodies`` in turn for ``seconds``; counts answers by status."""
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = k
        while time.monotonic() < deadline:
            try:
                conn.request("POST", "/invocations", body=bodies[i % len(bodies)], headers=JSON)
                response = conn.getresponse()
                response.read()
                key = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                key = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                statuses[key] += 1
            i += concurrency
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"requests": sum(statuses.values()), "statuses": dict(statuses)}


@contextlib.contextmanager
def sampled(cgroup: Cgroup, every_s: float = 0.1) -> Iterator[list[Memory]]:
    """Memory readings every ``every_s`` while the block runs (from the host's cgroup files: cheap)."""
    samples: list[Memory] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, ValueError, KeyError, di.EngineError):
                samples.append(cgroup.memory())
            stop.wait(every_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def cold_start(
    docker: di.Docker,
    image: str,
    model_dir: Path,
    name: str,
    bodies: list[bytes],
    args: argparse.Namespace,
    loaded: bool,
) -> dict[str, Any]:
    """One start of configuration ``name``: time to ``/ping`` and to the first answer, memory idle, and
    (``loaded``) memory under the load; the container is removed again whatever happens."""
    workers, memory_mb = CONFIGS[name]
    container = Container(docker, image, model_dir, workers, memory_mb)
    try:
        t0 = container.start()
        ping, first = wait_ready(container, t0, bodies[0], args.start_timeout)
        cgroup = Cgroup(docker, container.cid)
        start: dict[str, Any] = {"ping_s": ping, "first_prediction_s": first}
        if ping is None:
            start["state"], start["logs"] = container.state(), container.logs()
            print(f"  {name}: no /ping 200 within {args.start_timeout:g} s: {start['state']}", flush=True)
            return start
        time.sleep(args.settle)
        idle = cgroup.memory()
        start |= {"idle_rss_mb": idle.rss, "idle_usage_mb": idle.usage}
        shown = f"  {name}: /ping {ping:.2f} s, first answer {first or float('nan'):.2f} s, idle rss {idle.rss:.0f} MB"
        if loaded:
            with sampled(cgroup) as samples:
                traffic = load(container.port, bodies, args.concurrency, args.load_seconds)
            after = cgroup.memory()
            samples.append(after)
            start["load"] = {
                **traffic,
                "errors": traffic["requests"] - traffic["statuses"].get("200", 0),
                "peak_rss_mb": max(x.rss for x in samples),
                "peak_usage_mb": max(after.peak, idle.peak),
                "after_rss_mb": after.rss,
                "state": container.state(),
            }
            shown += f"; load: {traffic['statuses']}, peak rss {start['load']['peak_rss_mb']:.0f} MB"
        start["oom_kills"] = cgroup.oom_kills()
        print(shown, flush=True)
        return start
    finally:
        container.remove()


def summarize(name: str, starts: list[dict[str, Any]]) -> dict[str, Any]:
    """A configuration's starts as medians and maxima, and whether it works (see the module docstring)."""
    workers, memory_mb = CONFIGS[name]
    pings = [s["ping_s"] for s in starts if s.get("ping_s") is not None]
    firsts = [s["first_prediction_s"] for s in starts if s.get("first_prediction_s") is not None]
    idles = [s["idle_rss_mb"] for s in starts if "idle_rss_mb" in s]
    usages = [s["idle_usage_mb"] for s in starts if "idle_usage_mb" in s]
    traffic: dict[str, Any] = next((s["load"] for s in starts if "load" in s), {})
    oom_kills = sum(s.get("oom_kills", 0) for s in starts)
    return {
        "config": name,
        "workers": workers or "default",
        "memory_limit_mb": memory_mb,
        "starts": starts,
        "started": f"{len(pings)}/{len(starts)}",
        "ping_median_s": statistics.median(pings) if pings else None,
        "ping_max_s": max(pings) if pings else None,
        "first_prediction_median_s": statistics.median(firsts) if firsts else None,
        "idle_rss_mb": statistics.median(idles) if idles else None,
        "idle_usage_mb": statistics.median(usages) if usages else None,
        "load_requests": traffic.get("requests"),
        "load_errors": traffic.get("errors"),
        "peak_rss_mb": traffic.get("peak_rss_mb"),
        "peak_usage_mb": traffic.get("peak_usage_mb"),
        "oom_kills": oom_kills,
        "works": (
            len(pings) == len(starts)
            and bool(traffic.get("requests"))
            and traffic.get("errors") == 0
            and oom_kills == 0
            and not (traffic.get("state") or {}).get("OOMKilled")
        ),
    }


def build_serve_image(docker: di.Docker, commit: str) -> tuple[str, str]:
    """``docker build --target serve`` of ``commit`` as git holds it (``git archive``: none of the working
    tree's edits), on the same Debian base as the container tests; returns its tag and a description."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", commit], cwd=bl.REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    tag = f"textclf-bench-serverless:{sha}"
    if not docker.image_exists(tag):
        with tempfile.TemporaryDirectory(prefix="textclf-serverless-") as tmp:
            archive = subprocess.run(["git", "archive", sha], cwd=bl.REPO, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            build = ["--build-arg", f"BASE_IMAGE={di.base_image(docker)}", "--target", "serve"]
            log = di.CACHE_DIR / f"build-serverless-{sha}.log"
            print(f"building the serve image of {sha}: docker build {' '.join(build)} (log: {log})", flush=True)
            docker.build(Path(tmp), tag, build, log)
    return tag, f"serve target of commit {sha} (git archive), tagged {tag}"


def readable_copy(model_dir: Path, dest: Path) -> Path:
    """The model directory with the modes SageMaker's extraction of model.tar.gz gives (dirs 755, files 644):
    the image drops from root to its own user before it reads the model."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(model_dir, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def request_bodies() -> tuple[list[bytes], str]:
    """The load's bodies in turn: one short text, 8 short texts, 32 long texts (IMDB, cut at 128 tokens)."""
    try:
        short, long = bl.sample(bl.sst2_dev(), 400), bl.sample(bl.imdb_test_subset(), 320)
        source = "SST-2 dev and IMDB test subset"
    except SystemExit:
        short, long = bl.sample(bl.BUILTIN, 400), bl.sample([" ".join(bl.BUILTIN) * 4], 320)
        source = "built-in sentences (no shared data)"
    bodies = []
    for i in range(10):
        bodies.append(json.dumps({"inputs": short[i]}).encode())
        bodies.append(json.dumps({"inputs": short[10 + 8 * i : 18 + 8 * i]}).encode())
        bodies.append(json.dumps({"inputs": long[32 * i : 32 * (i + 1)]}).encode())
    return bodies, source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commit", default="HEAD", help="build the serve target of this commit (git archive)")
    ap.add_argument("--image", help="measure this existing image instead (e.g. textclf:test-serve)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"any of {', '.join(CONFIGS)}")
    ap.add_argument("--reps", type=int, default=5, help="cold starts per configuration")
    ap.add_argument("--load-seconds", type=float, default=5.0, help="load after the last start of each configuration")
    ap.add_argument("--concurrency", type=int, default=4, help="clients of the load")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between the first answer and the idle reading")
    ap.add_argument("--start-timeout", type=float, default=120.0, help="seconds a start may take to answer /ping")
    ap.add_argument("--hf-dir", help="Hugging Face classifier to export (default: as bench/server_load.py)")
    ap.add_argument("--out-dir", type=Path, default=bl.RESULTS_DIR)
    ap.add_argument("--name", default="serverless")
    args = ap.parse_args()
    names = args.configs.split(",")
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configs {unknown}: {', '.join(CONFIGS)}")

    run = bl.Run(args.name)
    hf_dir, hf_what = sl.pick_hf_dir(args.hf_dir, bl.WORK_DIR)
    model_dir = bl.export_dir(hf_dir, "int8", bl.WORK_DIR, 128)
    served = readable_copy(model_dir, bl.WORK_DIR / "serverless" / "model")
    bodies, source = request_bodies()
    results: dict[str, Any] = {
        "model": {"hf_dir": str(hf_dir), "what": hf_what, "int8_dir": str(model_dir)},
        "model_mb": round(sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()) / 1e6, 1),
        "texts": source,
        "cpus_seen_by_containers": os.cpu_count(),
        "serverless_sizes_mb": list(SERVERLESS_SIZES_MB),
    }
    with di.engine() as docker:
        if args.image:
            # Other jobs may rebuild that tag meanwhile: every start runs this one image, pinned by a tag of ours.
            image_id = docker.inspect(args.image)["Id"]
            pinned, source_of_image = f"textclf-bench-serverless:pid{os.getpid()}", f"{args.image} as found"
            docker.run("tag", image_id, pinned)
        else:
            pinned, source_of_image = build_serve_image(docker, args.commit)
            image_id = docker.inspect(pinned)["Id"]
        results["image"] = {"source": source_of_image, "id": image_id[:19], "bytes": docker.image_size(image_id)}
        print(f"image {source_of_image} {image_id[:19]} ({results['image']['bytes'] / 1e6:.0f} MB); "
              f"model {served} ({hf_what})", flush=True)  # fmt: skip
        starts: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        try:
            for rep in range(args.reps):  # the configurations take turns, so the machine's noise is shared
                for n in names:
                    loaded = rep == args.reps - 1
                    starts[n].append(cold_start(docker, pinned, served, n, bodies, args, loaded))
        finally:
            if args.image:
                docker.run("rmi", pinned, check=False)  # the tag only: the image stays with its own tag
        results["configs"] = [summarize(n, starts[n]) for n in names]

    columns = ["config", "workers", "memory_limit_mb", "started", "ping_median_s", "ping_max_s",
               "first_prediction_median_s", "idle_rss_mb", "idle_usage_mb", "load_requests", "load_errors",
               "peak_rss_mb", "peak_usage_mb", "oom_kills", "works"]  # fmt: skip
    headers = ["config", "workers", "--memory MB", "started", "/ping p50 s", "/ping max s", "1st answer p50 s",
               "idle RSS MB", "idle RSS+cache MB", "load requests", "errors", "peak RSS MB", "peak RSS+cache MB",
               "OOM kills", "works"]  # fmt: skip
    table = bl.md_table(results["configs"], columns, headers)
    notes = [
        f"image: {source_of_image}, {results['image']['bytes'] / 1e6:.0f} MB; model {results['model_mb']} MB "
        f"({hf_what})",
        f"{args.reps} cold starts per configuration (docker run -> first /ping 200); memory idle {args.settle:g} s "
        f"after the first answer; then {args.load_seconds:g} s of load from {args.concurrency} clients ({source}: "
        "1, 8, and 32 long texts per request in turn)",
        f"workers 'default' = one per CPU the container sees: {os.cpu_count()} here, 4 on an ml.c6i.xlarge "
        "(the w4 rows); ops deploy --serverless sets MODEL_SERVER_WORKERS=1 (the w1 rows)",
        "RSS = the cgroup's anonymous memory (memory.stat rss); RSS+cache adds the page cache, which the "
        "kernel reclaims under a --memory limit before it kills anything",
        "excluded: SageMaker's provisioning, the image pull and the model download (CloudWatch OverheadLatency "
        "on a real serverless endpoint), and Serverless's vCPU share per memory size",
    ]
    run.finish(results, table, notes, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
