"""A training pod left by a killed step (Kubernetes backend): the next materialization of the same work
dir deletes it and waits it out, or refuses while another live run owns it.

No Kubernetes engine runs on these machines (no Docker engine), so the API server is an in-memory stand-in
for ``CoreV1Api`` built from the real ``kubernetes`` client models and exceptions; the pod body is built by
``dagster_k8s`` itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster_k8s.pipes import build_pod_body
from kubernetes.client import V1ObjectMeta, V1Pod, V1PodList, V1PodStatus
from kubernetes.client.exceptions import ApiException

from resources.trainer import (
    RUN_ANNOTATION,
    WORK_DIR_LABEL,
    TrainerBusyError,
    clear_previous_training_pods,
    k8s_pod_meta,
    work_dir_label,
)

WORK = Path("/data/training/context_ext_stage1/3f9c2a")


class PodApi:
    """The three CoreV1Api calls the launcher makes. A deleted pod lingers for ``grace_reads`` reads (its
    container got SIGTERM and is stopping), then is gone (404)."""

    def __init__(self, grace_reads: int = 2):
        self.pods: dict[str, V1Pod] = {}
        self.deleting: dict[str, int] = {}
        self.grace_reads = grace_reads
        self.deleted: list[tuple[str, int]] = []

    def add(self, name: str, work_dir: Path, run_id: str, phase: str = "Running") -> None:
        meta = k8s_pod_meta(work_dir, run_id)
        self.pods[name] = V1Pod(
            metadata=V1ObjectMeta(name=name, labels=meta["labels"], annotations=meta["annotations"]),
            status=V1PodStatus(phase=phase),
        )

    def list_namespaced_pod(self, namespace, label_selector):
        key, value = label_selector.split("=")
        return V1PodList(items=[p for p in self.pods.values() if (p.metadata.labels or {}).get(key) == value])

    def delete_namespaced_pod(self, name, namespace, grace_period_seconds):
        if name not in self.pods:
            raise ApiException(status=404)
        self.deleted.append((name, grace_period_seconds))
        self.deleting[name] = self.grace_reads

    def read_namespaced_pod(self, name, namespace):
        if name not in self.pods:
            raise ApiException(status=404)
        if name in self.deleting:
            self.deleting[name] -= 1
            if self.deleting[name] < 0:
                del self.pods[name], self.deleting[name]
                raise ApiException(status=404)
        return self.pods[name]


def _clear(api, run_id, states, log=None):
    return clear_previous_training_pods(
        api, "kexaone", WORK, run_id, states.get, (log if log is not None else []).append, poll_s=0.01, timeout_s=5
    )


def test_the_pod_of_a_killed_run_is_deleted_and_waited_out_before_the_new_one_starts():
    api = PodApi()
    api.add("dagster-run-old-train", WORK, "old-run")  # its step was SIGKILLed; the run is marked failed
    api.add("other-stage", WORK.parent / "other-version", "old-run")  # another work dir: not touched
    api.add("finished", WORK, "older-run", phase="Succeeded")  # not live: not touched
    said: list[str] = []
    deleted = _clear(api, "new-run", {"old-run": "FAILURE", "older-run": "SUCCESS"}, said)
    assert deleted == ["dagster-run-old-train"]
    assert api.deleted == [("dagster-run-old-train", 30)]  # SIGTERM first: the trainer stops cleanly
    assert "dagster-run-old-train" not in api.pods  # waited until it was gone, not just asked
    assert set(api.pods) == {"other-stage", "finished"}
    assert said == [
        f"training pod dagster-run-old-train of run old-run (FAILURE) still trains {WORK}: deleting "
        "it (grace 30 s); this run resumes from its last checkpoint"
    ]


def test_a_pod_of_an_earlier_attempt_of_this_run_or_of_an_unknown_run_is_an_orphan_too():
    api = PodApi()
    api.add("attempt-1", WORK, "this-run")  # the step was retried inside the same run
    api.add("from-elsewhere", WORK, "run-of-another-instance")
    assert sorted(_clear(api, "this-run", {"this-run": "STARTED"})) == ["attempt-1", "from-elsewhere"]
    assert not api.pods


def test_a_pod_owned_by_another_live_run_is_refused_in_one_line_and_left_alone():
    api = PodApi()
    api.add("busy", WORK, "live-run")
    with pytest.raises(
        TrainerBusyError,
        match=rf"^work dir {WORK} is being trained by pod busy of run live-run "
        r"\(STARTED\); wait for that run or terminate it",
    ):
        _clear(api, "new-run", {"live-run": "STARTED"})
    assert "busy" in api.pods and not api.deleted


def test_a_pod_that_will_not_go_away_fails_with_the_command_to_look_at_it():
    api = PodApi(grace_reads=10_000)
    api.add("stuck", WORK, "old-run")
    with pytest.raises(TrainerBusyError, match="still exists after 0 s; check `kubectl -n kexaone get pod stuck`"):
        clear_previous_training_pods(
            api, "kexaone", WORK, "new-run", {"old-run": "FAILURE"}.get, print, poll_s=0.01, timeout_s=0.05
        )


def test_the_pod_dagster_k8s_builds_carries_the_work_dir_label_and_the_owning_run():
    pod = build_pod_body(
        pod_name="dagster-run-abc-train",
        image="kexaone:1",
        command=["python", "-m", "x"],
        env_vars={},
        base_pod_meta=k8s_pod_meta(WORK, "run-abc"),
        base_pod_spec={},
    )
    assert pod.metadata.labels[WORK_DIR_LABEL] == work_dir_label(WORK)
    assert len(work_dir_label(WORK)) <= 63  # a Kubernetes label value
    assert pod.metadata.annotations[RUN_ANNOTATION] == "run-abc"
    assert pod.metadata.labels["app.kubernetes.io/instance"] == "dagster"  # dagster's own labels kept
