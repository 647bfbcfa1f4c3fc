"""The project's exception hierarchy.

Every error raised on purpose by rsn2 derives from :class:`RSN2Error`, so callers can catch the
library's own failures without swallowing unrelated bugs. Messages name the offending value and
what is allowed.
"""

from __future__ import annotations


class RSN2Error(Exception):
    """Base class of every error rsn2 raises on purpose."""


class CapacityError(RSN2Error, ValueError):
    """A subnetwork asked for more positions of a layer than are still free."""


class OwnershipError(RSN2Error, ValueError):
    """An owner map is inconsistent: overlapping, unknown subnetwork ids, wrong shape."""


class TaskError(RSN2Error, KeyError):
    """A task or subnetwork name is unknown, duplicated or not allowed in this operation."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class FrozenSubnetworkError(RSN2Error, RuntimeError):
    """An operation would change a subnetwork that an earlier stage already froze."""


class SpecError(RSN2Error, ValueError):
    """An architecture, task or configuration description is malformed."""


class ModelFileError(RSN2Error, ValueError):
    """A model file is missing, truncated, malformed, tampered with or of an unknown version."""


class DataError(RSN2Error, OSError):
    """A dataset is missing, corrupt, truncated or not in a format rsn2 reads."""


class ConfigError(SpecError):
    """An experiment file is malformed; the message names the bad key and what is allowed."""


class TrainingError(RSN2Error, RuntimeError):
    """Training cannot go on (a non-finite loss); nothing was changed by the failing step."""


class CheckpointError(TrainingError):
    """A stage checkpoint is unreadable, of another format, or written by another stage or settings."""


class DistributedError(RSN2Error, RuntimeError):
    """Data-parallel ranks disagree (selection, weights or owner maps differ), or the process group is unusable."""


class ResultsFolderError(RSN2Error, RuntimeError):
    """An output folder holds another run's seeds or checkpoints, which must not be reused for this one."""


class ExportError(RSN2Error, RuntimeError):
    """Exporting a task failed, or the exported model does not compute what rsn2 computes."""


class UnknownDatasetError(RSN2Error, KeyError):
    """A dataset name the catalog does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
