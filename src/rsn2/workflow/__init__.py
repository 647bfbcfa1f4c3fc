"""Your own tasks from files: training files, reading and preprocessing data, and the train, add-task
and predict commands."""

from rsn2.workflow.commands import add_task_file, predict_file, train_file
from rsn2.workflow.config import TrainFile, load_train_file

__all__ = ["TrainFile", "add_task_file", "load_train_file", "predict_file", "train_file"]
