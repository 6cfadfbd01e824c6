"""Serving settings from the environment, CPU detection, and the nginx.conf template (checked by
the real nginx)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from textclf.contract.cpus import available_cpus, cgroup_cpu_limit
from textclf.errors import ConfigError
from textclf.serve.settings import ServingSettings
from textclf.serve.supervisor import find_nginx, gunicorn_command, render_nginx_conf, template_text

REPO = Path(__file__).resolve().parents[2]


def test_defaults_on_sagemaker(monkeypatch: pytest.MonkeyPatch) -> None:
    s = ServingSettings.from_env({}, cpus=4)
    assert (s.port, s.max_payload_mb, s.batch, s.timeout_s) == (8080, 6, False, 60)
    assert (s.workers, s.intra_op_threads) == (4, 1)  # workers x threads <= cores
    assert s.max_batch == 2048 and s.cache_size == 0 and s.rules == ""
    assert s.model_dir == Path("/opt/ml/model")
    assert s.max_payload_bytes == 6 * 1024 * 1024
    assert ServingSettings.from_env({"SM_ROOT": "/tmp/x"}, cpus=1).model_dir == Path("/tmp/x/model")


def test_sagemaker_variables() -> None:
    env = {
        "SAGEMAKER_BIND_TO_PORT": "9000",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
        "SAGEMAKER_BATCH": "True",
        "MODEL_SERVER_WORKERS": "3",
    }
    s = ServingSettings.from_env(env, cpus=8)
    assert (s.port, s.max_payload_mb, s.batch, s.workers) == (9000, 20, True, 3)
    assert s.intra_op_threads == 2  # 8 cores // 3 workers
    assert s.timeout_s == 3600 and s.max_batch == 0  # Batch Transform: long requests, no count limit
    # the toolkit's name wins over the scikit sample's
    assert ServingSettings.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "MODEL_SERVER_WORKERS": "5"}).workers == 1
    assert ServingSettings.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}, cpus=2).intra_op_threads == 2


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SAGEMAKER_BIND_TO_PORT": "http"}, "SAGEMAKER_BIND_TO_PORT='http' is not an integer"),
        ({"SAGEMAKER_BIND_TO_PORT": "70000"}, "SAGEMAKER_BIND_TO_PORT='70000' is out of range"),
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "101"}, "SAGEMAKER_MAX_PAYLOAD_IN_MB"),
        ({"SAGEMAKER_MODEL_SERVER_WORKERS": "0"}, "SAGEMAKER_MODEL_SERVER_WORKERS='0' is out of range"),
        ({"SAGEMAKER_BATCH": "maybe"}, "SAGEMAKER_BATCH='maybe' is not a boolean"),
        ({"TEXTCLF_MIN_CONFIDENCE": "1.5"}, "TEXTCLF_MIN_CONFIDENCE='1.5' is out of range"),
        ({"TEXTCLF_MIN_CONFIDENCE": "high"}, "TEXTCLF_MIN_CONFIDENCE='high' is not a number"),
        ({"TEXTCLF_LABEL_MAP": "{bad"}, "TEXTCLF_LABEL_MAP is not valid JSON"),
        ({"TEXTCLF_LABEL_MAP": '{"a": 1}'}, "TEXTCLF_LABEL_MAP must be a JSON object"),
        ({"TEXTCLF_CACHE_SIZE": "-1"}, "TEXTCLF_CACHE_SIZE"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServingSettings.from_env(env, cpus=2)
    assert fragment in str(info.value)


def test_textclf_knobs() -> None:
    env = {
        "TEXTCLF_MAX_BATCH": "10",
        "TEXTCLF_CACHE_SIZE": "100",
        "TEXTCLF_RULES": "mypkg.rules:Rules",
        "TEXTCLF_MIN_CONFIDENCE": "0.6",
        "TEXTCLF_UNCERTAIN_LABEL": "unsure",
        "TEXTCLF_LABEL_MAP": '{"LABEL_0": "negative"}',
        "TEXTCLF_LOG_TEXTS": "yes",
        "TEXTCLF_EMF": "1",
    }
    s = ServingSettings.from_env(env, cpus=2)
    assert (s.max_batch, s.cache_size, s.rules) == (10, 100, "mypkg.rules:Rules")
    assert (s.min_confidence, s.uncertain_label, s.label_map) == (0.6, "unsure", {"LABEL_0": "negative"})
    assert s.log_texts and s.emf


def test_cgroup_v2_and_v1_quotas(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "v1") == 3.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path / "v1") is None
    assert cgroup_cpu_limit(tmp_path / "nothing") is None


def test_available_cpus_is_capped_by_the_quota(tmp_path: Path) -> None:
    import os

    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a core: still one worker
    assert available_cpus(tmp_path) == 1
    assert available_cpus(tmp_path / "none") == len(os.sched_getaffinity(0))


# -- nginx.conf ------------------------------------------------------------------------------------------
def test_packaged_template_is_the_top_level_nginx_conf() -> None:
    settings = ServingSettings.from_env({}, cpus=1)
    assert template_text(settings) == (REPO / "nginx.conf").read_text(encoding="utf-8")


def test_rendered_conf_passes_nginx_t(tmp_path: Path) -> None:
    settings = ServingSettings.from_env({"SAGEMAKER_BIND_TO_PORT": "18081", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "7"}, cpus=1)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o755)
    tmp_path.chmod(0o755)
    text = render_nginx_conf(template_text(settings), settings, run_dir, run_dir / "gunicorn.sock")
    assert "{{" not in text
    assert "listen 18081 default_server;" in text
    assert "client_max_body_size 7m;" in text
    assert "proxy_read_timeout 60s;" in text
    assert "server_tokens off;" in text
    conf = run_dir / "nginx.conf"
    conf.write_text(text)
    check = subprocess.run(
        [find_nginx(settings), "-t", "-p", str(run_dir), "-e", "stderr", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr


def test_batch_transform_gets_long_timeouts(tmp_path: Path) -> None:
    settings = ServingSettings.from_env({"SAGEMAKER_BATCH": "true"}, cpus=1)
    text = render_nginx_conf(template_text(settings), settings, tmp_path, tmp_path / "s.sock")
    assert "proxy_read_timeout 3600s;" in text


def test_unknown_placeholder_is_an_error(tmp_path: Path) -> None:
    settings = ServingSettings.from_env({}, cpus=1)
    with pytest.raises(ConfigError, match="unknown placeholder"):
        render_nginx_conf("listen {{prot}};", settings, tmp_path, tmp_path / "s.sock")


def test_custom_template_via_env(tmp_path: Path) -> None:
    custom = tmp_path / "custom.conf"
    custom.write_text("# mine {{port}}\n")
    settings = ServingSettings.from_env({"TEXTCLF_NGINX_CONF": str(custom)}, cpus=1)
    assert template_text(settings) == "# mine {{port}}\n"
    missing = ServingSettings.from_env({"TEXTCLF_NGINX_CONF": str(tmp_path / "nope")}, cpus=1)
    with pytest.raises(ConfigError, match="TEXTCLF_NGINX_CONF"):
        template_text(missing)


def test_missing_nginx_is_a_clear_error() -> None:
    settings = ServingSettings.from_env({"TEXTCLF_NGINX": "no-such-nginx-binary"}, cpus=1)
    with pytest.raises(ConfigError, match="nginx-light"):
        find_nginx(settings)


def test_gunicorn_command(tmp_path: Path) -> None:
    settings = ServingSettings.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"}, cpus=2)
    cmd = gunicorn_command(settings, tmp_path / "g.sock", tmp_path)
    joined = " ".join(cmd)
    assert f"--bind unix:{tmp_path / 'g.sock'}" in joined
    assert "--workers 3" in joined and "--worker-class gthread" in joined
    assert "--no-control-socket" in joined
    graceful = int(cmd[cmd.index("--graceful-timeout") + 1])
    assert graceful < 30  # SageMaker's SIGKILL comes 30 s after SIGTERM
    assert cmd[-1] == "textclf.serve.app:create_app()"  # the app (and model) is built in each worker
    assert shutil.which(cmd[0])


def test_a_transform_jobs_payload_0_is_served_with_the_largest_sized_limit() -> None:
    """MaxPayloadInMB=0 (any size, chunked) is allowed by CreateTransformJob: serve must start."""
    settings = ServingSettings.from_env({"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"}, cpus=1)
    assert settings.max_payload_mb == 100 and settings.max_payload_bytes == 100 * 1024 * 1024
