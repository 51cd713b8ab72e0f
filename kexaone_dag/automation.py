"""Declarative automation: a new corpus version marks downstream assets stale and requests them.

* Every materialized asset downstream of data uses ``DOWNSTREAM_OF_DATA`` (``eager``): it is requested
  when an upstream gets a new *data version* (an unchanged version requests nothing) and waits while an
  upstream is missing or in progress.
* The raw corpus sources are observable; ``observe_raw_corpus_schedule`` re-observes them so that a
  changed folder becomes a new data version.
* Both the schedule and ``kexaone_automation`` (the sensor that evaluates the conditions) ship
  STOPPED: turn them on in the UI (Automation tab) or with
  ``dagster sensor start kexaone_automation -w workspace.yaml`` and
  ``dagster schedule start observe_raw_corpus_schedule -w workspace.yaml`` against a running
  ``dagster-daemon`` (``make ui`` runs one via ``dagster dev``).
"""

from __future__ import annotations

from dagster import AssetSelection, AutomationCondition, AutomationConditionSensorDefinition, DefaultSensorStatus

DOWNSTREAM_OF_DATA = AutomationCondition.eager()

automation_sensor = AutomationConditionSensorDefinition(
    "kexaone_automation",
    target=AssetSelection.all(include_sources=True),
    default_status=DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=60,
    description="Requests stale K-EXAONE assets when their upstream data versions change.",
)
