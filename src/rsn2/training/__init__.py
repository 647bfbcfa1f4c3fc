"""Training stages with the isolation guarantee, early stopping and evaluation."""

from rsn2.training.checkpoint import StageProgress, load_stage_checkpoint, save_stage_checkpoint
from rsn2.training.early_stopping import EarlyStopping
from rsn2.training.evaluation import METRIC_NAMES, evaluate, predict
from rsn2.training.isolation import IsolationGuard, stage_parameters, trainable_masks
from rsn2.training.loop import (
    OPTIMIZERS,
    StageResult,
    TrainConfig,
    fit_stage,
    selection_samples,
    train_stage,
    train_step,
)
from rsn2.training.task_data import TaskData, validation_split

__all__ = [
    "METRIC_NAMES",
    "OPTIMIZERS",
    "EarlyStopping",
    "IsolationGuard",
    "StageProgress",
    "StageResult",
    "TaskData",
    "TrainConfig",
    "evaluate",
    "fit_stage",
    "load_stage_checkpoint",
    "predict",
    "save_stage_checkpoint",
    "selection_samples",
    "stage_parameters",
    "train_stage",
    "train_step",
    "trainable_masks",
    "validation_split",
]
