"""One preprocessing per task, stored in the model file and applied the same way by ``rsn2 predict``,
``rsn2 serve``, :meth:`rsn2.TaskModel.predict` and the exported ONNX file.

:mod:`rsn2.preprocessing.inputs` holds how a raw input becomes the network's input tensor (tabular
features, images, text, or a tensor given as it is); :mod:`rsn2.preprocessing.pipeline` adds what
becomes of the network's output (probabilities and class names, or values in the training target's
units) and the named raw inputs and outputs every deployment path shares.
"""

from rsn2.preprocessing.inputs import ImageInput, TabularInput, TaskInput, TensorInput, TextInput, input_from_dict
from rsn2.preprocessing.pipeline import INPUTS_KEY, IOField, Preprocessing, preprocessing_of

__all__ = [
    "INPUTS_KEY",
    "IOField",
    "ImageInput",
    "Preprocessing",
    "TabularInput",
    "TaskInput",
    "TensorInput",
    "TextInput",
    "input_from_dict",
    "preprocessing_of",
]
