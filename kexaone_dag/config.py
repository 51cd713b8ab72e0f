"""The preset as a Dagster resource, so a run can pick it in run config.

    resources:
      preset:
        config: {name: k-exaone-236b, overrides: {"pretrain.max_lr": 2.0e-4}}

Without run config the name comes from $KEXAONE_PRESET (default ``tiny``); the dotted overrides in
$KEXAONE_PRESET_OVERRIDES (a JSON object) apply first, run-config overrides on top. The preset is validated
when the resource is set up, i.e. before any asset computes.
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from config import Preset, get_preset


class PresetResource(ConfigurableResource):
    name: str | None = None
    overrides: dict[str, Any] = {}

    _preset: Preset | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._preset = get_preset(self.name, self.overrides)

    def get(self) -> Preset:
        if self._preset is None:
            self._preset = get_preset(self.name, self.overrides)
        return self._preset
