"""Fixtures of the meta-learning tests."""

from __future__ import annotations

import pytest

from landcover.tasks.task import Task
from tests.meta.linreg import linear_task


@pytest.fixture
def task() -> Task:
    return linear_task()
