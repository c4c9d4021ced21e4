"""Episodes (tasks) and the samplers that produce them."""

from landcover.tasks.task import Task

__all__ = ["Task"]
