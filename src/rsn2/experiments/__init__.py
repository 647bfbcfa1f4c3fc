"""The paper's experiments as YAML files: loading, validation and the networks they describe.

Not done yet (see issue 4): the runner (`rsn2 run`) that trains, evaluates and reports.
"""

from rsn2.experiments.build import build_spec, task_spec
from rsn2.experiments.config import ARCHITECTURES, DATASETS, ExperimentConfig, load_config, parse_config

__all__ = ["ARCHITECTURES", "DATASETS", "ExperimentConfig", "build_spec", "load_config", "parse_config", "task_spec"]
