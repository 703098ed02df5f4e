"""The cluster configs: Ray cluster-launcher files (cluster/launch/*.yaml) and KubeRay manifests
(cluster/kuberay/*.yaml), checked with the validators of the tools that read them and for what the
sweep needs of them. Fast, offline.

Validators:
- launcher files: Ray's own `prepare_config` (merges the provider's defaults.yaml from the wheel)
  and `validate_config` (ray/autoscaler/ray-schema.json through jsonschema, then Ray's own rules).
  Neither imports boto3 or the Google client libraries, so no cloud SDK is needed.
- every pod template (the head group and each worker group, of the RayCluster and of the RayJob's
  rayClusterSpec), the PersistentVolumeClaim and the Secret: Kubernetes' OpenAPI schemas as
  `kubernetes-validate` ships them, strict variant (an unknown field fails). A template is
  validated wrapped in a core `PodTemplate` document. The RayCluster and RayJob documents
  themselves are not schema-checked here: KubeRay's CRD schemas are not packaged.

Every rule also runs on a deliberately broken copy and must reject it, so a check that accepts
anything fails its test.
"""

from __future__ import annotations

import copy
import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((REPO / "cluster" / "launch").glob("*.yaml"))
KUBERAY = REPO / "cluster" / "kuberay"
PRESETS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))
SHARED = "/shared"
K8S_VERSIONS = ("1.30.0", "1.37.0")  # the oldest and newest Kubernetes the manifests must suit
GPU_KEY = "nvidia.com/gpu"
TOKEN_KEY = "auth_token"  # the Secret key KubeRay reads (authOptions.secretName)
SPOT_LABELS = {
    "cloud.google.com/gke-spot": "true",
    "karpenter.sh/capacity-type": "spot",
    "eks.amazonaws.com/capacityType": "SPOT",
}
ON_DEMAND_LABELS = {
    "karpenter.sh/capacity-type": "on-demand",
    "eks.amazonaws.com/capacityType": "ON_DEMAND",
}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _flags(command: str) -> dict[str, str]:
    """`--name=value` / `--name value` options of a shell command line."""
    words = shlex.split(command.replace(";", " ; "))
    flags = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            name, sep, value = word[2:].partition("=")
            if not sep and i + 1 < len(words) and not words[i + 1].startswith("-"):
                value = words[i + 1]
            flags[name] = value
    return flags


# ---------------------------------------------------------------------------------------------
# Ray cluster launcher


def ray_prepared(config: dict) -> dict:
    """The config as `ray up` sees it: defaults merged, then validated by Ray itself."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def load_launch(path: Path) -> tuple[dict, str]:
    text = path.read_text()
    return ray_prepared(yaml.safe_load(text)), text


def is_spot(node_config: dict) -> bool:
    market = node_config.get("InstanceMarketOptions", {}).get("MarketType", "")
    scheduling = node_config.get("scheduling", {})
    if isinstance(scheduling, list):  # Ray's own GCP examples write it as a list
        scheduling = {k: v for item in scheduling for k, v in item.items()}
    return (
        market.lower() == "spot"
        or scheduling.get("provisioningModel") == "SPOT"
        or scheduling.get("preemptible") is True
    )


def worker_types(cfg: dict) -> dict[str, dict]:
    return {n: t for n, t in cfg["available_node_types"].items() if n != cfg["head_node_type"]}


def node_commands(cfg: dict, name: str) -> list[str]:
    """Every command Ray runs on a node of type `name`, in order (node-type fields override)."""
    node = cfg["available_node_types"][name]
    init = node.get("initialization_commands", cfg["initialization_commands"])
    if name == cfg["head_node_type"]:
        return init + cfg["head_setup_commands"] + cfg["head_start_ray_commands"]
    setup = node.get("worker_setup_commands", cfg["worker_setup_commands"])
    return init + setup + cfg["worker_start_ray_commands"]


NFS_MOUNT = re.compile(r"\bmount\s+-t\s+nfs4?\s[^;&|()]*")
BIND_MOUNT = re.compile(r"\bmount\s+--bind\s+(\S+)\s+([^\s;&|()]+)")
EXPORT = re.compile(r"export (\w+)=([^'\"\s;]+)")


def nfs_mounts(commands: list[str]) -> set[str]:
    return {m.group(0).split()[-1] for c in commands for m in NFS_MOUNT.finditer(c)}


def shared_paths(commands: list[str]) -> set[str]:
    """Mount points of the shared filesystem, and paths bound to directories on it."""
    nfs = nfs_mounts(commands)
    binds = {
        dst
        for c in commands
        for src, dst in BIND_MOUNT.findall(c)
        if any(src == p or src.startswith(p + "/") for p in nfs)
    }
    return nfs | binds


def comment_commands(text: str, marker: str) -> list[str]:
    """Commands the file documents in its comments (one per line) that contain `marker`."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("#")]
    return [line.lstrip("#").strip() for line in lines if marker in line]


def ingress_problems(cfg: dict, text: str) -> list[str]:
    """Nothing but SSH may be reachable from outside: the rules each node's group/network tag
    gets, as documented in the file, and no group Ray would make itself (its default group
    opens SSH to 0.0.0.0/0)."""
    problems = []
    cloud = cfg["provider"]["type"]
    nodes = cfg["available_node_types"]
    if cloud == "aws":
        if cfg["provider"].get("security_group"):
            problems.append("provider.security_group: Ray's own group opens SSH to 0.0.0.0/0")
        problems += [
            f"{n}: no SecurityGroupIds, so Ray makes a group open to 0.0.0.0/0 on port 22"
            for n, t in nodes.items()
            if not t["node_config"].get("SecurityGroupIds")
        ]
        rules = comment_commands(text, "authorize-security-group-ingress")
        external = [r for r in rules if "--cidr" in r or "CidrIp" in r]
        internal = [r for r in rules if r not in external]
        for rule in external:
            flags = _flags(rule)
            if flags.get("protocol") != "tcp" or flags.get("port") != "22":
                problems.append(f"a rule opens more than SSH from outside: {rule}")
        problems += [
            f"a group-internal rule names no source group: {r}"
            for r in internal
            if "UserIdGroupPairs" not in r and "--source-group" not in r
        ]
    elif cloud == "gcp":
        rules = comment_commands(text, "firewall-rules create")
        external = [r for r in rules if "--source-ranges" in r]
        for rule in rules:
            flags = _flags(rule)
            if rule in external and flags.get("allow") != "tcp:22":
                problems.append(f"a rule opens more than SSH from outside: {rule}")
            if rule not in external and "source-tags" not in flags:
                problems.append(f"an internal rule names no source tags: {rule}")
            for n, t in nodes.items():
                tags = t["node_config"].get("tags", {}).get("items", [])
                if flags.get("target-tags") not in tags:
                    problems.append(f"{n}: lacks the network tag of rule {rule}")
        problems += [
            f"{n}: no networkInterfaces, so Ray picks a subnet (maybe the default network's)"
            for n, t in nodes.items()
            if not t["node_config"].get("networkInterfaces")
        ]
    else:
        problems.append(f"unknown provider {cloud}")
    if not external:
        problems.append("no documented ingress rule lets SSH in")
    return problems


def launcher_problems(cfg: dict, text: str) -> list[str]:
    problems = []
    nodes = cfg["available_node_types"]
    head = nodes[cfg["head_node_type"]]
    if head["resources"].get("GPU") != 0 or head["resources"].get("CPU") != 0:
        problems.append(f"head resources {head['resources']}: want CPU 0 and GPU 0 declared")
    if head["max_workers"] != 0:
        problems.append("the head type must not scale")

    workers = worker_types(cfg)
    gpu = {n: t for n, t in workers.items() if t["resources"].get("GPU", 0) > 0}
    if not any(is_spot(t["node_config"]) for t in gpu.values()):
        problems.append("no spot GPU worker type")
    if not any(not is_spot(t["node_config"]) for t in gpu.values()):
        problems.append("no on-demand GPU worker type")
    for n, t in workers.items():
        if not 0 <= t["min_workers"] <= t["max_workers"] <= cfg["max_workers"]:
            problems.append(f"{n}: want 0 <= min_workers <= max_workers <= global max_workers")
        if t["max_workers"] < 1:
            problems.append(f"{n}: max_workers < 1")
        if not {"CPU", "GPU"} <= set(t["resources"]):
            problems.append(f"{n}: declare resources CPU and GPU")
    if sum(t["min_workers"] for t in workers.values()) > cfg["max_workers"]:
        problems.append("the min_workers add up to more than max_workers")

    starts = [
        c
        for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
        if "ray start" in c
    ]
    problems += [f"no RAY_AUTH_MODE=token: {c}" for c in starts if "RAY_AUTH_MODE=token" not in c]
    head_starts = [c for c in cfg["head_start_ray_commands"] if "ray start" in c]
    if len(head_starts) != 1:
        problems.append("want exactly one `ray start --head`")
    for c in head_starts:
        flags = _flags(c)
        if flags.get("dashboard-host") != "127.0.0.1":
            problems.append(f"dashboard host {flags.get('dashboard-host')!r}, want 127.0.0.1")
        if flags.get("num-gpus") != "0":
            problems.append("the head's `ray start` must declare --num-gpus=0")
    if "~/.ray/auth_token" not in cfg["file_mounts"]:
        problems.append("the auth token (~/.ray/auth_token) is not copied to the nodes")

    mounts = {n: nfs_mounts(node_commands(cfg, n)) for n in nodes}
    problems += [
        f"{n}: shared filesystem mounted at {m}, want {{{SHARED!r}}}"
        for n, m in mounts.items()
        if m != {SHARED}
    ]
    return problems + ingress_problems(cfg, text)


def _broken_head_gpu(cfg: dict, text: str) -> tuple[dict, str]:
    cfg["available_node_types"][cfg["head_node_type"]]["resources"]["GPU"] = 1
    return cfg, text


def _no_spot(cfg: dict, text: str) -> tuple[dict, str]:
    for t in worker_types(cfg).values():
        t["node_config"].pop("InstanceMarketOptions", None)
        t["node_config"].pop("scheduling", None)
    return cfg, text


def _min_above_max(cfg: dict, text: str) -> tuple[dict, str]:
    t = next(iter(worker_types(cfg).values()))
    t["min_workers"] = t["max_workers"] + 1
    return cfg, text


def _start_without_token(cfg: dict, text: str) -> tuple[dict, str]:
    cfg["worker_start_ray_commands"] = [
        c.replace("RAY_AUTH_MODE=token ", "") for c in cfg["worker_start_ray_commands"]
    ]
    return cfg, text


def _public_dashboard(cfg: dict, text: str) -> tuple[dict, str]:
    cfg["head_start_ray_commands"] = [
        c.replace("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")
        for c in cfg["head_start_ray_commands"]
    ]
    return cfg, text


def _worker_mounts_elsewhere(cfg: dict, text: str) -> tuple[dict, str]:
    name = next(iter(worker_types(cfg)))
    cfg["available_node_types"][name]["initialization_commands"] = [
        c.replace(f" {SHARED}", " /mnt/shared") for c in cfg["initialization_commands"]
    ]
    return cfg, text


def _dashboard_port_opened(cfg: dict, text: str) -> tuple[dict, str]:
    if cfg["provider"]["type"] == "aws":
        rule = (
            "# aws ec2 authorize-security-group-ingress --group-id SG"
            " --protocol tcp --port 8265 --cidr 0.0.0.0/0"
        )
    else:
        rule = (
            "# gcloud compute firewall-rules create dash --allow=tcp:8265"
            " --source-ranges=0.0.0.0/0 --target-tags=voicescale-ray"
        )
    return cfg, text + "\n" + rule + "\n"


def _no_security_group(cfg: dict, text: str) -> tuple[dict, str]:
    for t in cfg["available_node_types"].values():
        t["node_config"].pop("SecurityGroupIds", None)
        t["node_config"].pop("networkInterfaces", None)
    return cfg, text


LAUNCH_BREAKAGES: list[Callable[[dict, str], tuple[dict, str]]] = [
    _broken_head_gpu,
    _no_spot,
    _min_above_max,
    _start_without_token,
    _public_dashboard,
    _worker_mounts_elsewhere,
    _dashboard_port_opened,
    _no_security_group,
]


def test_launcher_files_exist():
    assert {p.name for p in LAUNCH_FILES} >= {"aws.yaml", "gcp.yaml"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launcher_config_passes_rays_validation(path: Path):
    raw = _yaml(path)
    ray_prepared(raw)  # raises on any schema or rule violation
    misspelled = copy.deepcopy(raw)
    gpu = next(
        t for n, t in misspelled["available_node_types"].items() if n != raw["head_node_type"]
    )
    gpu["min_worker"] = gpu.pop("min_workers")
    with pytest.raises(jsonschema.ValidationError):
        ray_prepared(misspelled)
    too_many = copy.deepcopy(raw)
    too_many["max_workers"] = 1  # below the sum of min_workers: one of Ray's own rules
    with pytest.raises(ValueError):
        ray_prepared(too_many)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launcher_config_head_workers_auth_ports_and_mounts(path: Path):
    """No GPUs on the head; on-demand and spot GPU types with sane bounds; token auth in every
    `ray start`; the dashboard on 127.0.0.1; SSH the only way in; /shared on every node."""
    cfg, text = load_launch(path)
    assert launcher_problems(cfg, text) == []


@pytest.mark.parametrize("breakage", LAUNCH_BREAKAGES, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launcher_checks_reject_a_broken_copy(path: Path, breakage):
    cfg, text = load_launch(path)
    assert launcher_problems(*breakage(cfg, text)), f"{breakage.__name__} went unnoticed"


# ---------------------------------------------------------------------------------------------
# KubeRay


def kuberay_docs() -> tuple[dict, dict, list[dict]]:
    storage = [d for d in yaml.safe_load_all((KUBERAY / "storage.yaml").read_text()) if d]
    return _yaml(KUBERAY / "raycluster.yaml"), _yaml(KUBERAY / "rayjob.yaml"), storage


def cluster_specs() -> list[tuple[str, dict]]:
    cluster, job, _ = kuberay_docs()
    return [("raycluster", cluster["spec"]), ("rayjob", job["spec"]["rayClusterSpec"])]


def groups(spec: dict) -> list[tuple[str, dict]]:
    return [("head", spec["headGroupSpec"])] + [
        (g["groupName"], g) for g in spec.get("workerGroupSpecs", [])
    ]


def of_kind(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def k8s_validate(doc: dict) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def pod_template(name: str, template: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": name},
        "template": template,
    }


def _quantity(value: Any) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def group_resources(group: dict) -> dict[str, float]:
    """Ray's CPUs and GPUs on one pod of `group`, as KubeRay derives them: rayStartParams, else
    the Ray container's limits (CPU rounded up), else its CPU request."""
    container = group["template"]["spec"]["containers"][0]
    limits = container.get("resources", {}).get("limits", {})
    requests = container.get("resources", {}).get("requests", {})
    params = group.get("rayStartParams", {})
    cpu = params.get("num-cpus") or math.ceil(_quantity(limits.get("cpu", requests.get("cpu", 0))))
    gpu = params.get("num-gpus") or limits.get(GPU_KEY, 0)
    return {"CPU": float(cpu), "GPU": _quantity(gpu)}


def capacity(pod_spec: dict) -> str | None:
    """The kind of node the pod is pinned to, spot or on-demand; None if it may land on either."""
    selector = pod_spec.get("nodeSelector", {})
    if any(selector.get(k) == v for k, v in SPOT_LABELS.items()):
        return "spot"
    if any(selector.get(k) == v for k, v in ON_DEMAND_LABELS.items()):
        return "on-demand"
    required = pod_spec.get("affinity", {}).get("nodeAffinity", {})
    terms = required.get("requiredDuringSchedulingIgnoredDuringExecution", {}).get(
        "nodeSelectorTerms", []
    )
    if terms and all(
        any(
            e["key"] in SPOT_LABELS and e["operator"] == "DoesNotExist"
            for e in t.get("matchExpressions", [])
        )
        for t in terms
    ):
        return "on-demand"
    return None


def kuberay_problems(spec: dict, storage: list[dict]) -> list[str]:
    problems = []
    pvc, secret = of_kind(storage, "PersistentVolumeClaim"), of_kind(storage, "Secret")
    if spec.get("enableInTreeAutoscaling") is not True:
        problems.append("enableInTreeAutoscaling is not true")
    auth = spec.get("authOptions", {})
    if auth.get("mode") != "token" or auth.get("secretName") != secret["metadata"]["name"]:
        problems.append(f"authOptions {auth}: want token mode with the Secret of storage.yaml")
    if "ReadWriteMany" not in pvc["spec"]["accessModes"]:
        problems.append("the volume is not ReadWriteMany")

    head = spec["headGroupSpec"]
    if head.get("serviceType", "ClusterIP") != "ClusterIP" or head.get("enableIngress"):
        problems.append("the head is reachable from outside the cluster (serviceType/Ingress)")
    if head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") != "ClusterIP":
        problems.append("headService is not ClusterIP")
    head_res = head["template"]["spec"]["containers"][0].get("resources", {})
    head_gpus = [head_res.get(k, {}).get(GPU_KEY) for k in ("limits", "requests")]
    if head["rayStartParams"].get("num-gpus") != "0" or any(head_gpus):
        problems.append(f"the head must have no GPUs (rayStartParams num-gpus: '0', no {GPU_KEY})")

    kinds = []
    for name, group in groups(spec):
        pod = group["template"]["spec"]
        if name != "head":
            lo, hi = group.get("minReplicas", 0), group.get("maxReplicas", 0)
            if not 0 <= lo <= group.get("replicas", lo) <= hi or hi < 1:
                problems.append(f"{name}: want 0 <= minReplicas <= replicas <= maxReplicas, >= 1")
            if group_resources(group)["GPU"] > 0:
                kinds.append(capacity(pod))
                if capacity(pod) is None:
                    problems.append(f"{name}: not pinned to spot or to on-demand nodes")
                res = pod["containers"][0].get("resources", {})
                limit = res.get("limits", {}).get(GPU_KEY)
                if limit is None or _quantity(limit) < 1:
                    problems.append(f"{name}: no {GPU_KEY} limit")
                if res.get("requests", {}).get(GPU_KEY, limit) != limit:
                    problems.append(f"{name}: {GPU_KEY} request differs from its limit")
        claims = {
            v["name"]
            for v in pod.get("volumes", [])
            if v.get("persistentVolumeClaim", {}).get("claimName") == pvc["metadata"]["name"]
        }
        for c in pod["containers"]:
            env = {e["name"]: e for e in c.get("env", [])}
            if env.get("RAY_AUTH_MODE", {}).get("value") != "token":
                problems.append(f"{name}/{c['name']}: RAY_AUTH_MODE is not token")
            ref = env.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
            if ref != {"name": auth.get("secretName"), "key": TOKEN_KEY}:
                problems.append(f"{name}/{c['name']}: RAY_AUTH_TOKEN not from the token Secret")
            if not any(
                m["name"] in claims and m["mountPath"] == SHARED and not m.get("subPath")
                for m in c.get("volumeMounts", [])
            ):
                problems.append(f"{name}/{c['name']}: the shared volume is not at {SHARED}")
    if "spot" not in kinds:
        problems.append("no spot GPU worker group")
    if "on-demand" not in kinds:
        problems.append("no on-demand GPU worker group")
    return problems


def _k8s_head_gpu(spec: dict) -> None:
    spec["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"][GPU_KEY] = "1"


def _k8s_load_balancer(spec: dict) -> None:
    spec["headGroupSpec"]["serviceType"] = "LoadBalancer"


def _k8s_no_gpu_limit(spec: dict) -> None:
    for group in spec["workerGroupSpecs"]:
        del group["template"]["spec"]["containers"][0]["resources"]["limits"][GPU_KEY]
        group["rayStartParams"]["num-gpus"] = "1"


def _k8s_no_spot(spec: dict) -> None:
    for group in spec["workerGroupSpecs"]:
        selector = group["template"]["spec"].get("nodeSelector", {})
        for key in SPOT_LABELS:
            selector.pop(key, None)


def _k8s_token_from_elsewhere(spec: dict) -> None:
    env = spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["env"]
    env[:] = [e for e in env if e["name"] != "RAY_AUTH_TOKEN"]


def _k8s_no_auth(spec: dict) -> None:
    spec.pop("authOptions")


def _k8s_mount_elsewhere(spec: dict) -> None:
    container = spec["workerGroupSpecs"][-1]["template"]["spec"]["containers"][0]
    for mount in container["volumeMounts"]:
        if mount["mountPath"] == SHARED:
            mount["mountPath"] = "/mnt/shared"


def _k8s_replicas_above_max(spec: dict) -> None:
    group = spec["workerGroupSpecs"][0]
    group["replicas"] = group["maxReplicas"] + 1


K8S_BREAKAGES: list[Callable[[dict], None]] = [
    _k8s_head_gpu,
    _k8s_load_balancer,
    _k8s_no_gpu_limit,
    _k8s_no_spot,
    _k8s_token_from_elsewhere,
    _k8s_no_auth,
    _k8s_mount_elsewhere,
    _k8s_replicas_above_max,
]

TEMPLATES = [
    pytest.param(where, name, group["template"], id=f"{where}-{name}")
    for where, spec in cluster_specs()
    for name, group in groups(spec)
]


@pytest.mark.parametrize(("where", "name", "template"), TEMPLATES)
def test_pod_template_passes_kubernetes_schema(where: str, name: str, template: dict):
    k8s_validate(pod_template(f"{where}-{name}", template))
    misspelled = copy.deepcopy(template)
    container = misspelled["spec"]["containers"][0]
    container["resource"] = container.pop("resources")
    with pytest.raises(kubernetes_validate.ValidationError):
        k8s_validate(pod_template(f"{where}-{name}", misspelled))


def test_storage_documents_pass_kubernetes_schema():
    _, _, storage = kuberay_docs()
    assert sorted(d["kind"] for d in storage) == ["PersistentVolumeClaim", "Secret"]
    for doc in storage:
        k8s_validate(doc)
    pvc = copy.deepcopy(of_kind(storage, "PersistentVolumeClaim"))
    pvc["spec"]["accessMode"] = pvc["spec"].pop("accessModes")
    with pytest.raises(kubernetes_validate.ValidationError):
        k8s_validate(pvc)
    secret = of_kind(storage, "Secret")
    assert secret["stringData"] == {TOKEN_KEY: ""}, "storage.yaml must not carry a real token"


@pytest.mark.parametrize(("where", "spec"), [pytest.param(w, s, id=w) for w, s in cluster_specs()])
def test_kuberay_spec_gpus_auth_service_and_volume(where: str, spec: dict):
    """GPU groups with nvidia.com/gpu limits, on spot and on demand; no GPU on the head; token
    auth from the storage.yaml Secret in every container; the head service in-cluster only; the
    ReadWriteMany volume at /shared in every container."""
    _, _, storage = kuberay_docs()
    assert kuberay_problems(spec, storage) == []


@pytest.mark.parametrize("breakage", K8S_BREAKAGES, ids=lambda f: f.__name__.strip("_"))
def test_kuberay_checks_reject_a_broken_copy(breakage):
    spec = cluster_specs()[0][1]
    _, _, storage = kuberay_docs()
    broken = copy.deepcopy(spec)
    breakage(broken)
    assert kuberay_problems(broken, storage), f"{breakage.__name__} went unnoticed"


def rayjob_problems(job: dict) -> list[str]:
    problems = []
    spec = job["spec"]
    words = shlex.split(spec.get("entrypoint", ""))
    args = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    if not words or words[0] != "make" or "scale-sweep" not in words:
        problems.append(f"entrypoint {spec.get('entrypoint')!r} does not run `make scale-sweep`")
    runs = args.get("RUNS", "")
    if not (runs == SHARED or runs.startswith(SHARED + "/")):
        problems.append(f"RUNS={runs!r} is not on the shared volume ({SHARED})")
    if not (REPO / args.get("SWEEP", "-")).is_file():
        problems.append(f"SWEEP={args.get('SWEEP')!r} is no preset of this repository")
    if spec.get("backoffLimit", 0) < 1:
        problems.append("backoffLimit < 1: a failed run is not retried")
    if spec.get("submissionMode", "K8sJobMode") != "K8sJobMode":
        problems.append("submissionMode is not K8sJobMode")
    if (
        spec.get("shutdownAfterJobFinishes") is not True
        or spec.get("ttlSecondsAfterFinished", 0) <= 0
    ):
        problems.append("the cluster is not shut down (with a TTL) when the job ends")
    return problems


def test_rayjob_runs_the_sweep_resumably_on_its_own_copy_of_the_cluster():
    cluster, job, _ = kuberay_docs()
    assert rayjob_problems(job) == []
    assert job["spec"]["rayClusterSpec"] == cluster["spec"], "rayjob.yaml's cluster drifted"
    for key, value in [("backoffLimit", 0), ("entrypoint", "make scale-sweep RUNS=runs")]:
        broken = copy.deepcopy(job)
        broken["spec"][key] = value
        assert rayjob_problems(broken), f"{key}={value!r} went unnoticed"


# ---------------------------------------------------------------------------------------------
# The GPU presets fit the node types


@dataclass(frozen=True)
class Pool:
    """One worker node type (launcher) or worker group (KubeRay): its Ray resources per node,
    how many nodes are up at start, and how many there can be."""

    name: str
    cpu: float
    gpu: float
    start: int
    most: int


def launcher_pools(cfg: dict) -> tuple[list[Pool], int]:
    pools = [
        Pool(
            n,
            t["resources"].get("CPU", 0),
            t["resources"].get("GPU", 0),
            t["min_workers"],
            t["max_workers"],
        )
        for n, t in worker_types(cfg).items()
    ]
    return pools, cfg["max_workers"]


def kuberay_pools(spec: dict) -> tuple[list[Pool], int]:
    pools = []
    for name, group in groups(spec)[1:]:
        res = group_resources(group)
        start = max(group.get("minReplicas", 0), group.get("replicas", 0))
        pools.append(Pool(name, res["CPU"], res["GPU"], start, group["maxReplicas"]))
    return pools, math.inf


def _slots(pools: list[Pool], count: Callable[[Pool], int], cap: float, per: Callable) -> float:
    """Most workers the pools hold, filling the roomiest node types first, at most `cap` nodes."""
    total, left = 0.0, cap
    for pool in sorted(pools, key=per, reverse=True):
        nodes = min(count(pool), left)
        total += nodes * per(pool)
        left -= nodes
    return total


def fit_problems(trials: list, pools: list[Pool], cap: float) -> list[str]:
    """One worker of every trial must fit on one node of some worker type, and all its workers
    on the nodes there can be; the nodes up at start must hold them too, since the sweep checks
    its CPUs (and sizes its concurrency) against the cluster as it finds it."""
    problems = []
    for r in {t.resources for t in trials}:
        need = f"{r.num_workers} x ({r.cpus_per_worker:g} CPUs + {r.gpus_per_worker:g} GPUs)"
        fits = [p for p in pools if p.cpu >= r.cpus_per_worker and p.gpu >= r.gpus_per_worker]
        if not fits:
            problems.append(f"{need}: one worker fits no node type")
            continue

        def per(p: Pool, r=r) -> int:
            gpu = p.gpu // r.gpus_per_worker if r.gpus_per_worker else math.inf
            return int(min(p.cpu // r.cpus_per_worker, gpu))

        if _slots(fits, lambda p: p.most, cap, per) < r.num_workers:
            problems.append(f"{need}: more than the largest cluster holds")
        if _slots(fits, lambda p: p.start, cap, per) < r.num_workers:
            problems.append(f"{need}: more than the nodes up at start hold")
    return problems


def gpu_presets() -> list[tuple[Path, Any]]:
    from training.config import SweepConfig
    from training.config_io import load_config

    found = []
    for path in PRESETS:
        sweep = load_config(SweepConfig, path)
        if any(t.resources.gpus_per_worker > 0 for t in sweep.trials()):
            found.append((path, sweep))
    return found


def cluster_configs() -> list[tuple[str, list[Pool], float]]:
    configs = [(p.name, *launcher_pools(load_launch(p)[0])) for p in LAUNCH_FILES]
    return configs + [(f"kuberay/{where}", *kuberay_pools(spec)) for where, spec in cluster_specs()]


def test_gpu_presets_are_found():
    assert {p.stem for p, _ in gpu_presets()} >= {"libritts-r-gpu", "gpu-smoke"}


@pytest.mark.parametrize(
    ("preset", "sweep"), [pytest.param(p, s, id=p.stem) for p, s in gpu_presets()]
)
def test_gpu_preset_fits_every_cluster_config(preset: Path, sweep):
    for where, pools, cap in cluster_configs():
        assert fit_problems(sweep.trials(), pools, cap) == [], (preset.name, where)


def test_fit_check_rejects_a_cluster_too_small():
    (_, sweep) = next((p, s) for p, s in gpu_presets() if p.stem == "libritts-r-gpu")
    trials = sweep.trials()
    pools, cap = launcher_pools(load_launch(LAUNCH_FILES[0])[0])
    assert fit_problems(trials, [replace(p, gpu=0) for p in pools], cap)
    assert fit_problems(trials, [replace(p, cpu=4) for p in pools], cap)
    assert fit_problems(trials, [replace(p, start=0) for p in pools], cap)
    assert fit_problems(trials, [replace(p, most=1, start=1) for p in pools[:1]], cap)
    assert fit_problems(trials, pools, 1)


def corpus_problems(sweep, shared: set[str], data_root: str | None) -> list[str]:
    """The corpus must be where every node sees it: a prepared corpus under a shared path, a
    synthetic one built under $VOICESCALE_DATA on a shared path."""
    path = sweep.trial.corpus.path or (data_root or "data (the repository)")
    if not any(path == s or path.startswith(s + "/") for s in shared):
        return [f"corpus at {path}: not on the shared filesystem {sorted(shared)}"]
    return []


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_gpu_preset_corpora_are_on_the_launchers_shared_filesystem(path: Path):
    cfg, _ = load_launch(path)
    for name in cfg["available_node_types"]:
        commands = node_commands(cfg, name)
        shared = shared_paths(commands)
        data_root = dict(EXPORT.findall(" ".join(commands))).get("VOICESCALE_DATA")
        for preset, sweep in gpu_presets():
            assert corpus_problems(sweep, shared, data_root) == [], (name, preset.name)
            assert corpus_problems(sweep, {SHARED + "/runs"}, None), "the check went blind"


def test_gpu_preset_corpora_are_on_the_kuberay_volume():
    _, _, storage = kuberay_docs()
    claim = of_kind(storage, "PersistentVolumeClaim")["metadata"]["name"]
    for _, spec in cluster_specs():
        for name, group in groups(spec):
            pod = group["template"]["spec"]
            volumes = {
                v["name"]
                for v in pod["volumes"]
                if v.get("persistentVolumeClaim", {}).get("claimName") == claim
            }
            for c in pod["containers"]:
                shared = {m["mountPath"] for m in c["volumeMounts"] if m["name"] in volumes}
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                for preset, sweep in gpu_presets():
                    found = corpus_problems(sweep, shared, env.get("VOICESCALE_DATA"))
                    assert found == [], (name, preset.name)
