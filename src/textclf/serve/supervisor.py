"""``textclf serve``: check the model, then start and supervise nginx and gunicorn.

    SageMaker -> :8080 nginx -> unix socket -> gunicorn (gthread workers) -> textclf.serve.app -> predictor

Order of events:

1. Read the settings; verify the model directory (format, sha256 of every file) and load the
   business-rule hooks *here*, before any worker starts: a tampered model or a broken hook stops
   ``serve`` with one clear line on stderr and exit status 2, and ``/ping`` never says healthy.
2. Render ``nginx.conf`` into a private run directory (pid file, temp dirs, the gunicorn socket;
   world-traversable, because nginx workers run as ``nobody``).
3. Start gunicorn, whose workers each load the model after the fork (ORT sessions do not survive a
   fork), then nginx. Both stay in this process group, so whoever kills the group kills them all.
4. Supervise: if either exits, stop the other and exit non-zero.
5. On SIGTERM (SageMaker sends SIGKILL 30 s later): nginx gets SIGQUIT, stops accepting and
   finishes its in-flight requests (after accepting for 1 s more what the kernel already queued);
   then gunicorn gets SIGTERM, with nothing left to serve.
   Exit 0 when both stopped cleanly. A second SIGTERM/SIGINT hurries both.
"""

from __future__ import annotations

import contextlib
import grp
import importlib.resources
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from textclf.errors import ConfigError, UserError
from textclf.serve import startup
from textclf.serve.settings import ServingSettings

STOP_DEADLINE_S = 28.0  # SageMaker sends SIGKILL 30 s after SIGTERM
NGINX_DRAIN_S = 25.0  # matches worker_shutdown_timeout in nginx.conf
# Connections the kernel has completed but nginx has not accept()ed yet sit in the listen backlog; a
# listener closed at once resets them, and their requests, already sent, are lost. So nginx keeps
# accepting this long after SIGTERM before it closes the listener (measured: 4 of 16 requests sent
# just before SIGTERM were reset without it).
ACCEPT_GRACE_S = 1.0
GUNICORN_GRACEFUL_S = 20  # gunicorn's --graceful-timeout: under 30 s
# gunicorn's --keep-alive: longer than nginx.conf's upstream keepalive_timeout (60 s), so that nginx,
# not gunicorn, closes an idle connection, and never sends a request on one gunicorn is closing.
GUNICORN_KEEPALIVE_S = 75
POLL_S = 0.2
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
log = logging.getLogger("textclf.serve.supervisor")


# -- configuration ---------------------------------------------------------------------------------------
def template_text(settings: ServingSettings) -> str:
    """The nginx.conf template: ``TEXTCLF_NGINX_CONF`` if set, else the packaged copy of the top-level file."""
    if settings.nginx_template:
        path = Path(settings.nginx_template)
        if not path.is_file():
            raise ConfigError(f"TEXTCLF_NGINX_CONF={settings.nginx_template!r}: no such file")
        return path.read_text(encoding="utf-8")
    resource = importlib.resources.files("textclf.serve") / "templates" / "nginx.conf"
    try:
        return resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"the nginx.conf template is missing from the textclf package ({exc}); install the package from a "
            "checkout that has the top-level nginx.conf, or set TEXTCLF_NGINX_CONF"
        ) from None


def _user_directive() -> str:
    """nginx workers drop to ``nobody`` when the master runs as root (it does, on SageMaker)."""
    if os.geteuid() != 0:
        return "# not root: nginx workers keep this user"
    try:
        group = "nogroup"
        grp.getgrnam(group)
    except KeyError:
        group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    return f"user nobody {group};"


def render_nginx_conf(template: str, settings: ServingSettings, run_dir: Path, socket: Path) -> str:
    """Fill the ``{{name}}`` placeholders; an unknown placeholder is an error, not a silent blank."""
    values = {
        "user": _user_directive(),
        "run_dir": str(run_dir),
        "socket": str(socket),
        "port": str(settings.port),
        "max_body_mb": str(settings.max_payload_mb),
        "timeout_s": str(settings.timeout_s),
        "client_header_timeout_s": str(settings.client_header_timeout_s),
        "client_body_timeout_s": str(settings.client_body_timeout_s),
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ConfigError(f"nginx.conf template: unknown placeholder {{{{{name}}}}}")
        return values[name]

    return _PLACEHOLDER.sub(fill, template)


def find_nginx(settings: ServingSettings) -> str:
    found = shutil.which(settings.nginx) or shutil.which(settings.nginx, path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise ConfigError(
            f"nginx not found (looked for {settings.nginx!r} on PATH and in /usr/sbin): install it "
            "(Debian: apt-get install nginx-light) or set TEXTCLF_NGINX"
        )
    return found


def gunicorn_command(settings: ServingSettings, socket: Path, run_dir: Path) -> list[str]:
    tmp = "/dev/shm" if os.access("/dev/shm", os.W_OK) else str(run_dir)  # heartbeat files: keep off slow disks
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"unix:{socket}",
        "--workers",
        str(settings.workers),
        # gthread: a worker busy with a long batch still answers /ping from another thread.
        "--worker-class",
        "gthread",
        "--threads",
        str(settings.worker_threads),
        "--timeout",
        str(settings.timeout_s + 30),
        "--graceful-timeout",
        str(GUNICORN_GRACEFUL_S),
        "--keep-alive",
        str(GUNICORN_KEEPALIVE_S),
        "--worker-tmp-dir",
        tmp,
        "--no-control-socket",  # gunicorn 26 would otherwise open ~/.gunicorn/gunicorn.ctl
        "--error-logfile",
        "-",
        "--log-level",
        "info",
        "textclf.serve.app:create_app()",
    ]


def check(settings: ServingSettings) -> str:
    """Everything that can be wrong before a worker starts; returns a one-line summary."""
    return startup.load(settings, session=False).summary(settings)


# -- supervision -----------------------------------------------------------------------------------------
class Supervisor:
    """Runs nginx and gunicorn; returns the exit status of ``serve``."""

    def __init__(self, settings: ServingSettings, nginx: str, run_dir: Path, conf: Path, socket: Path) -> None:
        self.settings = settings
        self.nginx_bin = nginx
        self.run_dir = run_dir
        self.conf = conf
        self.socket = socket
        self.stop_requested = threading.Event()
        self.hurry = False
        self.stop_started = 0.0
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.worker_failure_file = run_dir / "worker-failure.txt"

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_requested.is_set():
            self.hurry = True
        else:
            self.stop_started = time.monotonic()
        self.stop_requested.set()

    def start(self) -> None:
        env = dict(os.environ)
        env.update(self.settings.worker_env())
        env.setdefault("PYTHONUNBUFFERED", "1")
        env[startup.FAILURE_FILE_ENV] = str(self.worker_failure_file)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # numpy must not oversubscribe
            env.setdefault(var, str(self.settings.intra_op_threads))
        self.procs["gunicorn"] = subprocess.Popen(gunicorn_command(self.settings, self.socket, self.run_dir), env=env)
        nginx = [self.nginx_bin, "-p", str(self.run_dir), "-e", "stderr", "-c", str(self.conf)]
        self.procs["nginx"] = subprocess.Popen(nginx)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        try:
            if not self.stop_requested.is_set():
                self.start()
            while not self.stop_requested.is_set():
                for name, proc in self.procs.items():
                    code = proc.poll()
                    if code is not None:
                        reason = startup.read_worker_failure(self.worker_failure_file)
                        if name == "gunicorn" and reason:
                            # gunicorn halts when a worker cannot boot: a model that passed the hash
                            # check but that ONNX Runtime cannot load, say. Same answer as check().
                            print(f"textclf serve: cannot start: {reason}", file=sys.stderr, flush=True)
                            self._stop_all(time.monotonic() + 10.0)
                            return 2
                        log.error("%s exited unexpectedly (status %s): stopping serve", name, code)
                        self._stop_all(time.monotonic() + 10.0)
                        return 1
                self.stop_requested.wait(POLL_S)
            return self._graceful_stop()
        finally:
            self._kill_leftovers()

    def _graceful_stop(self) -> int:
        started = self.stop_started or time.monotonic()
        deadline = started + STOP_DEADLINE_S
        log.info("stopping: nginx finishes in-flight requests, then gunicorn stops")
        nginx, gunicorn = self.procs.get("nginx"), self.procs.get("gunicorn")
        grace_until = started + ACCEPT_GRACE_S
        while not self.hurry and time.monotonic() < grace_until:
            time.sleep(0.05)
        self._signal(nginx, signal.SIGQUIT)  # graceful: close the listener, finish active requests
        self._wait(nginx, min(deadline - 2.0, started + NGINX_DRAIN_S + 1.0), hurry_signal=signal.SIGTERM)
        self._signal(gunicorn, signal.SIGTERM)  # graceful: workers finish what they hold
        self._wait(gunicorn, deadline, hurry_signal=signal.SIGINT)
        codes = {name: proc.poll() for name, proc in self.procs.items()}
        if all(code == 0 for code in codes.values()):
            log.info("stopped cleanly in %.1f s", time.monotonic() - started)
            return 0
        log.error("stopped with exit statuses %s", codes)
        return 1

    def _stop_all(self, deadline: float) -> None:
        self._signal(self.procs.get("nginx"), signal.SIGQUIT)
        self._signal(self.procs.get("gunicorn"), signal.SIGTERM)
        for proc in self.procs.values():
            self._wait(proc, deadline, hurry_signal=None)

    def _wait(self, proc: subprocess.Popen[bytes] | None, deadline: float, hurry_signal: int | None) -> None:
        if proc is None:
            return
        hurried = False
        while proc.poll() is None and time.monotonic() < deadline:
            if self.hurry and hurry_signal is not None and not hurried:
                self._signal(proc, hurry_signal)
                hurried = True
            time.sleep(0.05)
        if proc.poll() is None:
            log.error("pid %s did not stop in time: killing it", proc.pid)
            self._signal(proc, signal.SIGKILL)
            proc.wait()

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes] | None, signum: int) -> None:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    def _kill_leftovers(self) -> None:
        """Whatever is still running when ``run`` returns (an exception, a stop that timed out), and
        the orphans of a master that died: an nginx worker outlives a killed nginx master and keeps
        the port open; gunicorn workers outlive their master for a moment."""
        for proc in self.procs.values():
            if proc.poll() is None:
                self._signal(proc, signal.SIGKILL)
                proc.wait()
        for pid in orphans_in_process_group():
            log.warning("killing pid %s, left behind in serve's process group", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def orphans_in_process_group() -> list[int]:
    """Other processes of this process group, when ``serve`` leads it (as PID 1 of a container, or
    started in its own session); empty otherwise: the group is then someone else's."""
    me, group = os.getpid(), os.getpgrp()
    if group != me:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    try:
        settings = ServingSettings.from_env()
        summary = check(settings)
        nginx = find_nginx(settings)
        template = template_text(settings)
    except UserError as exc:
        print(f"textclf serve: cannot start: {exc}", file=sys.stderr, flush=True)
        return 2
    log.info("%s", summary)
    log.info(
        "port %s, %s gunicorn workers x %s threads, %s ORT intra-op thread(s) per worker, body limit %s MB, "
        "timeout %s s%s",
        settings.port,
        settings.workers,
        settings.worker_threads,
        settings.intra_op_threads,
        settings.max_payload_mb,
        settings.timeout_s,
        " (Batch Transform)" if settings.batch else "",
    )
    run_dir = Path(tempfile.mkdtemp(prefix="textclf-serve-"))
    try:
        run_dir.chmod(0o755)  # nginx workers (nobody) must reach the socket inside
        socket = run_dir / "gunicorn.sock"
        conf = run_dir / "nginx.conf"
        try:
            conf.write_text(render_nginx_conf(template, settings, run_dir, socket), encoding="utf-8")
        except UserError as exc:
            print(f"textclf serve: cannot start: {exc}", file=sys.stderr, flush=True)
            return 2
        return Supervisor(settings, nginx, run_dir, conf, socket).run()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
