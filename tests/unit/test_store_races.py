"""A write that lost a race to insert a shared row (a dataset two runs log at once) is tried
again; anything else is raised at once."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

from tracking.run import retry_unique_race

LOST_RACE = (
    "RestException: BAD_REQUEST: (psycopg2.errors.UniqueViolation) duplicate key value "
    'violates unique constraint "datasets_pk"'
)


def _writer(failures: list[Exception]):
    calls: list[int] = []

    def write() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "logged"

    return write, calls


def test_a_lost_race_is_tried_again_until_the_row_exists():
    write, calls = _writer([MlflowException(LOST_RACE), MlflowException(LOST_RACE)])
    assert retry_unique_race(write) == "logged"
    assert len(calls) == 3


def test_other_errors_are_raised_at_once():
    write, calls = _writer([MlflowException("INVALID_PARAMETER_VALUE: bad name")])
    with pytest.raises(MlflowException, match="bad name"):
        retry_unique_race(write)
    assert len(calls) == 1


def test_the_last_lost_race_is_raised():
    write, calls = _writer([MlflowException(LOST_RACE)] * 3)
    with pytest.raises(MlflowException, match="UniqueViolation"):
        retry_unique_race(write, attempts=3)
    assert len(calls) == 3


def test_a_local_stores_lost_race_is_tried_again_too():
    import sqlalchemy.exc

    lost = sqlalchemy.exc.IntegrityError(
        "INSERT INTO datasets", {}, Exception("UNIQUE constraint failed: datasets.name")
    )
    write, calls = _writer([lost])
    assert retry_unique_race(write) == "logged"
    assert len(calls) == 2
