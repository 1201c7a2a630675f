"""Classification tasks and how a data set's fine labels map onto each task's classes.

Every source reader assigns a *fine label* from ``FINE_LABELS``; a task's class of an image is derived from it
here, in one place, so that all readers, the manifest and the models agree.
"""

from __future__ import annotations

from typing import Literal

TaskName = Literal["binary", "3class", "4class"]
TASKS: tuple[str, ...] = ("binary", "3class", "4class")

# Fine labels found in the supported archives.
#   pneumonia: pneumonia of unknown cause (a class-per-folder tree with a PNEUMONIA folder)
#   lung_opacity: COVID-19 Radiography Database "Lung_Opacity" (non-COVID lung infection); in no task's classes
FINE_LABELS: tuple[str, ...] = ("normal", "bacteria", "virus", "covid", "pneumonia", "lung_opacity")

TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "binary": ("normal", "pneumonia"),
    "3class": ("normal", "bacteria", "virus"),
    "4class": ("normal", "bacteria", "virus", "covid"),
}

# fine label -> class name per task; a missing key means "not part of this task" (the image is left out and counted).
_FINE_TO_TASK: dict[str, dict[str, str]] = {
    "binary": {"normal": "normal", "bacteria": "pneumonia", "virus": "pneumonia", "pneumonia": "pneumonia",
               "covid": "pneumonia"},
    "3class": {"normal": "normal", "bacteria": "bacteria", "virus": "virus"},
    "4class": {"normal": "normal", "bacteria": "bacteria", "virus": "virus", "covid": "covid"},
}


def task_classes(task: str) -> tuple[str, ...]:
    """Class names of ``task`` in index order (index 0 is always ``normal``)."""
    try:
        return TASK_CLASSES[task]
    except KeyError:
        from pneumoscope.errors import ConfigError

        raise ConfigError(f"unknown task {task!r}.", fix=f"use one of: {', '.join(TASKS)}.") from None


def task_label(task: str, fine_label: str) -> str | None:
    """Class name of an image with ``fine_label`` in ``task``, or None if the image is not part of the task."""
    task_classes(task)
    return _FINE_TO_TASK[task].get(fine_label)


def label_column(task: str) -> str:
    """Manifest column holding the class name for ``task``."""
    task_classes(task)
    return f"label_{task}"
