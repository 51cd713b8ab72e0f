"""What is on by default where (``KEXAONE_AUTOMATION``) and the preset overrides from the environment
(``KEXAONE_PRESET_OVERRIDES``): pure functions of the environment, refused in one line when wrong."""

from __future__ import annotations

import pytest

from config import PresetError, get_preset
from kexaone_dag.automation import AutomationConfigError, automation_mode, build_automation_sensor, local_deployment
from kexaone_dag.sensors import build_raw_corpus_watch

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("env", "local", "mode"),
    [
        ({}, True, "on"),  # make ui / make demo: tiny, embedded storage
        ({"KEXAONE_PRESET": "tiny", "KEXAONE_EXECUTOR": "multiprocess"}, True, "on"),
        ({"KEXAONE_PRESET": "k-exaone-236b"}, False, "observe"),
        ({"KEXAONE_ARTIFACT_ROOT": "s3://bucket/artifacts"}, False, "observe"),
        ({"KEXAONE_CORPUS_ROOT": "s3://corpora/raw"}, False, "observe"),
        ({"KEXAONE_EXECUTOR": "k8s"}, False, "observe"),
        ({"KEXAONE_TRAINER": "k8s"}, False, "observe"),
        ({"KEXAONE_TRAINER": "k8s-multinode"}, False, "observe"),
        ({"KEXAONE_PRESET": "k-exaone-236b", "KEXAONE_AUTOMATION": "on"}, False, "on"),
        ({"KEXAONE_AUTOMATION": "OFF"}, True, "off"),
        ({"KEXAONE_AUTOMATION": "observe"}, True, "observe"),
    ],
)
def test_automation_is_on_locally_and_observes_only_in_production(env, local, mode):
    assert local_deployment(env) is local
    assert automation_mode(env) == mode


@pytest.mark.parametrize(
    ("mode", "automation", "watch"),
    [("on", "RUNNING", "RUNNING"), ("observe", "STOPPED", "RUNNING"), ("off", "STOPPED", "STOPPED")],
)
def test_the_mode_is_the_sensors_default_status_and_their_description_says_so(mode, automation, watch):
    sensor, watcher = build_automation_sensor(mode), build_raw_corpus_watch(mode)
    assert (sensor.default_status.value, watcher.default_status.value) == (automation, watch)
    assert sensor.minimum_interval_seconds == watcher.minimum_interval_seconds == 30
    for s, status in ((sensor, automation), (watcher, watch)):
        assert f"Default here: {'on' if status == 'RUNNING' else 'off'} (`KEXAONE_AUTOMATION`={mode}" in s.description


def test_a_bad_automation_setting_is_refused_in_one_line():
    with pytest.raises(AutomationConfigError, match=r"^KEXAONE_AUTOMATION='always' is not one of on, observe, off$"):
        automation_mode({"KEXAONE_AUTOMATION": "always"})


def test_preset_overrides_from_the_environment_apply_under_run_config(monkeypatch):
    monkeypatch.setenv("KEXAONE_PRESET_OVERRIDES", '{"pretrain.total_tokens": 6144, "eval.niah_trials": 1}')
    p = get_preset()
    assert (p.pretrain.total_tokens, p.eval.niah_trials) == (6144, 1)
    assert get_preset("tiny", {"eval.niah_trials": 3}).eval.niah_trials == 3  # run config wins
    assert get_preset("k-exaone-236b").pretrain.total_tokens == 6144  # whichever preset is chosen


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{bad", r"^KEXAONE_PRESET_OVERRIDES is not valid JSON \(Expecting property name"),
        ("[1, 2]", r"^KEXAONE_PRESET_OVERRIDES must be a JSON object of dotted overrides, .*; got a list$"),
        ('{"pretrain.nope": 1}', r"^KEXAONE_PRESET_OVERRIDES: override 'pretrain.nope': no field 'nope'"),
        ('{"eval.niah_trials": 0}', r"^preset 'tiny' is invalid: eval.niah grid sizes must be positive$"),
    ],
)
def test_bad_preset_overrides_from_the_environment_are_refused_in_one_line(monkeypatch, value, message):
    monkeypatch.setenv("KEXAONE_PRESET_OVERRIDES", value)
    with pytest.raises(PresetError, match=message) as info:
        get_preset("tiny")
    assert "\n" not in str(info.value)
