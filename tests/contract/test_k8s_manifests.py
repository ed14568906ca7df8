"""The Kubernetes manifest users run shards with: valid for the API server (the 1.30 schema, strict:
an unknown field is an error) and speaking the simulator's current command line."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from simulator import cli as simulator_cli
from simulator.shard import Shard
from testbed.paths import ROOT

MANIFESTS = sorted((ROOT / "simulator" / "k8s").glob("*.yaml"))
KUBERNETES = "1.30"


def _documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("document", _documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_each_manifest_is_valid_for_the_api_server(document: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(document, KUBERNETES, strict=True) == KUBERNETES


def test_the_indexed_job_runs_one_shard_per_completion_index_with_the_simulators_own_options() -> None:
    (job,) = [d for d in _documents() if d["kind"] == "Job"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert "secretKeyRef" in env["SIMULATOR_SIGNING_KEY"]["valueFrom"], "the key never in the manifest itself"
    args = container["args"]
    assert args[:2] == ["simulator", "run"]
    shard = args[args.index("--shard") + 1]
    assert shard == f"$(SHARD_INDEX)/{spec['completions']}", "N must be the number of completions"
    assert "$(SHARD_INDEX)" in args[args.index("--summary") + 1]
    # the last index, with the variables Kubernetes expands, through the simulator's own parser
    last = spec["completions"] - 1
    expanded = [a.replace("$(SHARD_INDEX)", str(last)).replace("$(RUN_TAG)", env["RUN_TAG"]["value"]) for a in args]
    parsed = simulator_cli.build_parser().parse_args(expanded[1:])
    assert parsed.shard == Shard(last, spec["completions"])
    assert (ROOT / parsed.fleet).is_file(), "a fleet the image ships"


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_the_locust_workers_are_as_many_as_the_shards_the_master_expects() -> None:
    deployments = {d["metadata"]["name"]: d for d in _documents() if d["kind"] == "Deployment"}
    master = deployments["locust-master"]["spec"]["template"]["spec"]["containers"][0]["args"]
    worker_spec = deployments["locust-worker"]["spec"]
    worker = worker_spec["template"]["spec"]["containers"][0]["args"]
    replicas = str(worker_spec["replicas"])
    assert _option(master, "--expect-workers") == _option(master, "--shards") == _option(worker, "--shards") == replicas
    assert _option(master, "--run-tag") == _option(worker, "--run-tag")
    assert _option(worker, "--master-host") in {d["metadata"]["name"] for d in _documents() if d["kind"] == "Service"}
    assert (ROOT / _option(worker, "--fleet")).is_file()
    assert master[:3] == worker[:3] == ["locust", "-f", "simulator/locustfile.py"]
    assert (ROOT / master[2]).is_file()


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_only_the_runs_workers_may_reach_the_locust_master_and_its_web_ui_asks_for_a_login() -> None:
    """Anyone who reached the master's port could send a summary or drive the run: the policy's
    selectors must pick exactly the master's pods and let in only the workers', on the workers' port."""
    documents = _documents()
    (policy,) = [d for d in documents if d["kind"] == "NetworkPolicy"]
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in documents
        if d["kind"] == "Deployment"
    }
    job_pods = [d["spec"]["template"]["metadata"]["labels"] for d in documents if d["kind"] == "Job"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    guarded = {name for name, labels in pods.items() if _matches(spec["podSelector"]["matchLabels"], labels)}
    assert guarded == {"locust-master"}
    (rule,) = spec["ingress"]
    (source,) = rule["from"]
    allowed = {name for name, labels in pods.items() if _matches(source["podSelector"]["matchLabels"], labels)}
    assert allowed == {"locust-worker"}
    assert not any(_matches(source["podSelector"]["matchLabels"], labels) for labels in job_pods)
    assert rule["ports"] == [{"port": 5557, "protocol": "TCP"}], "the web UI's port is not opened to anyone"
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    master = deployments["locust-master"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--web-login" in master and "--web-password-file" in master


def test_every_shard_seals_its_summary_with_the_runs_key_from_a_secret() -> None:
    documents = _documents()
    for document in documents:
        if document["kind"] not in ("Job", "Deployment"):
            continue
        pod = document["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            key_file = _option(container["args"], "--run-key-file")
            (mount,) = [m for m in container["volumeMounts"] if key_file.startswith(m["mountPath"] + "/")]
            assert volumes[mount["name"]]["secret"]["secretName"] == "testbed-run-key"
