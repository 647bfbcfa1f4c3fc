"""The paper's experiments as YAML files: loading, validation, the networks they describe, and the
runner behind ``rsn2 run`` (:mod:`rsn2.experiments.runner`)."""

from rsn2.experiments.build import build_spec, task_spec
from rsn2.experiments.config import DATASETS, ExperimentConfig, load_config, parse_config

__all__ = ["DATASETS", "ExperimentConfig", "build_spec", "load_config", "parse_config", "task_spec"]
