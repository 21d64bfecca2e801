"""Offline tests of the kubernetes runtime's pure parts: names, pod specs, references, states.

No cluster needed (no ``kubernetes`` marker); the real thing is proven by the other files here.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("rayfine_kubernetes")

from rayfine_core import Limits, StartRequest, errors, labels
from rayfine_kubernetes import names, registry, spec, status
from rayfine_kubernetes.deadline import DeadlineKeeper
from rayfine_kubernetes.settings import Settings


def test_labels_kubernetes_accepts_pass_unchanged_others_hash_stably():
    good = {labels.ENV_ID: "ab12cd", labels.PID: "4242", "app.kubernetes.io/name": "x"}
    assert names.encode_labels(good) == good
    odd = {"Team Name": "Ops & ML", "k": "v" * 64, "": "-bad-"}
    encoded = names.encode_labels(odd)
    assert encoded == names.encode_labels(odd)  # deterministic: selectors find them again
    assert all(names.valid_label_key(k) and names.valid_label_value(v) for k, v in encoded.items())
    assert len(set(encoded)) == 3
    stored = {"annotations": names.notes(odd, "n", "img"), "labels": encoded}
    assert names.original_labels(stored) == odd


@pytest.mark.parametrize(
    "name",
    ["rayfine-affine-0123456789ab", "My_Env.1", "x" * 128, "a..b", "UPPER", "rayfine-" + "a" * 60],
)
def test_object_names_are_dns_labels_and_distinct(name):
    made = names.object_name(name)
    assert len(made) <= names.MAX_OBJECT_NAME and names._DNS_LABEL.match(made)
    assert made == names.object_name(name)
    if made != name:
        assert made != names.object_name(name + "x")


def test_ids_round_trip_and_reject_garbage():
    assert names.split_id(names.container_id("default", "job-1", "job-1-abcde")) == (
        "default",
        "job-1",
        "job-1-abcde",
    )
    for bad in ("", "a/b", "a/b/c/d", "../x/y", "NS/job/pod"):
        with pytest.raises(errors.ValidationError):
            names.split_id(bad)


def _request(**changes) -> StartRequest:
    request = StartRequest(
        image="affine:latest",
        name="rayfine-affine-0123456789ab",
        env={"API_KEY": "v4lue", "RAYFINE_UDS": "/run/rayfine/s.sock"},
        token="t0ken",
        labels={labels.OWNER: labels.OWNER_VALUE, labels.ENV_ID: "0123456789ab"},
        limits=Limits(mem_limit="512m", cpu_limit=0.25),
        cap_add=("NET_BIND_SERVICE",),
    )
    for key, value in changes.items():
        setattr(request, key, value)
    return request


def _job(plan: spec.Plan) -> dict:
    kind, job = plan.objects[-1]
    assert kind == "jobs"
    return job


def test_no_value_of_a_secret_is_in_the_job_spec():
    plan = spec.plan(_request(), "default", "reg/affine@sha256:" + "0" * 64, 300)
    job = json.dumps(_job(plan))
    assert "v4lue" not in job and "t0ken" not in job and "API_KEY" not in job
    secrets = [body for kind, body in plan.objects if kind == "secrets"]
    assert [s["metadata"]["name"] for s in secrets] == [plan.env_secret, plan.token_secret]
    assert secrets[0]["stringData"] == {"API_KEY": "v4lue"}  # never the token in env vars
    assert secrets[1]["stringData"] == {"token": "t0ken"}


def test_pod_spec_is_hardened_and_limited():
    pod = _job(spec.plan(_request(), "default", "img@sha256:" + "0" * 64, 300))["spec"]["template"][
        "spec"
    ]
    (container,) = pod["containers"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 10001,
        "runAsNonRoot": True,
        "runAsGroup": 10001,
        "fsGroup": 10001,
    }
    assert container["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["NET_BIND_SERVICE"],
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"] == {"memory": "512Mi", "cpu": "250m"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RAYFINE_TOKEN_FILE"] == spec.TOKEN_FILE and "RAYFINE_UDS" not in env
    assert container["envFrom"] == [{"secretRef": {"name": "rayfine-affine-0123456789ab-env"}}]


def test_deadline_only_for_attached_environments():
    attached = _job(spec.plan(_request(), "default", "img", 300))["spec"]
    assert attached["activeDeadlineSeconds"] == 300 and attached["backoffLimit"] == 0
    detached = _request(labels={labels.DETACHED: "1"})
    assert "activeDeadlineSeconds" not in _job(spec.plan(detached, "default", "img", 300))["spec"]
    assert "activeDeadlineSeconds" not in _job(spec.plan(_request(), "default", "img", 0))["spec"]


def test_lost_nodes_are_excluded_and_options_pass_through():
    request = _request()
    request.options = {"node_selector": {"pool": "envs"}, "tolerations": [{"operator": "Exists"}]}  # type: ignore[attr-defined]
    pod = _job(spec.plan(request, "default", "img", 300, avoid_nodes=["n2"]))["spec"]["template"][
        "spec"
    ]
    assert pod["nodeSelector"] == {"pool": "envs"} and pod["tolerations"] == [
        {"operator": "Exists"}
    ]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["n2"]
    request.options = {"nodeSelector": {}}  # type: ignore[attr-defined]
    with pytest.raises(errors.ValidationError, match="Unknown kubernetes option"):
        spec.plan(request, "default", "img", 300)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("512m", "512Mi"), ("2g", "2Gi"), ("1.5g", "1.5Gi"), ("1024", "1024"), ("64k", "64Ki")],
)
def test_memory_quantities(given, expected):
    assert spec.memory_quantity(given) == expected


def test_what_a_pod_cannot_do_is_a_validation_error():
    with pytest.raises(errors.ValidationError, match="pids_limit"):
        spec.plan(_request(limits=Limits(pids_limit=64)), "default", "img", 300)
    with pytest.raises(errors.ValidationError, match="numeric"):
        spec.plan(_request(user="nobody"), "default", "img", 300)
    with pytest.raises(errors.ValidationError, match="isolation"):
        spec.plan(_request(isolation="vm"), "default", "img", 300)


def test_image_references_resolve_to_the_registry():
    ref = registry.parse("affine:v1", "reg.example:5000/team")
    assert (ref.registry, ref.repository, ref.tag) == ("reg.example:5000", "team/affine", "v1")
    assert str(registry.parse("ghcr.io/org/env", None)) == "ghcr.io/org/env:latest"
    assert registry.parse("localhost/x@sha256:" + "a" * 64, None).digest == "sha256:" + "a" * 64
    with pytest.raises(errors.ValidationError, match="RAYFINE_K8S_REGISTRY"):
        registry.parse("affine:v1", None)
    with pytest.raises(errors.ValidationError, match="Invalid image reference"):
        registry.parse("Not A Tag!", "reg")


def _pod(state: dict, phase: str = "Running", **meta) -> dict:
    return {
        "metadata": {"name": "p", **meta},
        "status": {"phase": phase, "containerStatuses": [{"name": spec.CONTAINER, "state": state}]},
    }


def test_states_from_pod_status():
    assert status.state(None).status == "removed"
    assert status.state(_pod({"running": {}})).running
    oom = status.state(_pod({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, "Failed"))
    assert (oom.running, oom.exit_code, oom.oom_killed) == (False, 137, True)
    assert not status.state(_pod({"running": {}}, deletionTimestamp="2026-01-01T00:00:00Z")).running
    deadline = {"metadata": {}, "status": {"phase": "Failed", "reason": "DeadlineExceeded"}}
    assert status.state(deadline).status == "deadlineexceeded"


def test_start_progress_tells_waiting_from_hopeless():
    assert status.progress(_pod({"running": {}})).done
    missing = status.progress(
        _pod({"waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}})
    )
    assert missing.failure and missing.image_missing
    hiccup = status.progress(
        _pod({"waiting": {"reason": "ErrImagePull", "message": "i/o timeout"}})
    )
    assert not hiccup.failure and not hiccup.done
    assert status.progress(_pod({"waiting": {"reason": "CreateContainerConfigError"}})).failure


def test_deadlines_move_forward_from_creation_without_comparing_clocks():
    renewed: list[tuple[str, str, int]] = []
    keeper = DeadlineKeeper(lambda ns, job, seconds: renewed.append((ns, job, seconds)), 60)
    import time

    keeper.track("default", "job", time.monotonic() - 100)
    keeper.renew_all()
    ((namespace, job, seconds),) = renewed
    assert (namespace, job) == (
        "default",
        "job",
    ) and 160 <= seconds <= 161  # window + age, rounded up
    keeper.untrack("default", "job")
    keeper.renew_all()
    assert len(renewed) == 1
    keeper.close()


def test_settings_come_from_the_environment_and_are_checked():
    settings = Settings.from_env(
        {
            "RAYFINE_K8S_NAMESPACE": "envs",
            "RAYFINE_K8S_ACCESS": "pod-ip",
            "RAYFINE_K8S_REGISTRY": "r/x/",
        }
    )
    assert (settings.namespace, settings.access, settings.registry) == ("envs", "pod-ip", "r/x")
    assert Settings.from_env({}, namespace="other").namespace == "other"
    with pytest.raises(errors.ValidationError, match="RAYFINE_K8S_ACCESS"):
        Settings.from_env({"RAYFINE_K8S_ACCESS": "magic"})
    with pytest.raises(errors.ValidationError, match="LEASE"):
        Settings.from_env({"RAYFINE_K8S_LEASE_SECONDS": "3"})
