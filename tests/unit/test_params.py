"""The parameter schema (``core.params``): types, bounds, bools, defaults and messages;
and the settings and flags built from it (``SearchConfig``, ``TaskSpec``, ``hwprune
search``), whose defaults cannot drift apart."""

from __future__ import annotations

import dataclasses
import math

import pytest

from core.params import Param, Schema, describe_range, infer_kind, parse_scientific


def _error(param: Param, value: object) -> str:
    with pytest.raises(ValueError) as info:
        param.check(value)
    return str(info.value)


# --- Param: one value ------------------------------------------------------------------


def test_ints_accept_ints_and_integral_floats_but_not_bools_or_text() -> None:
    p = Param("n", "int", low=1)
    assert p.check(3) == 3
    assert p.check(1e6) == 1_000_000 and isinstance(p.check(1e6), int)  # YAML's 1e6
    assert _error(p, True) == "n must be an integer >= 1, got True"
    assert _error(p, "3") == "n must be an integer >= 1, got '3'"
    assert _error(p, 2.5) == "n must be an integer >= 1, got 2.5"
    assert _error(p, 0) == "n must be an integer >= 1, got 0"


def test_int_bounds_name_the_whole_range() -> None:
    p = Param("seed", "int", low=0, high=2**32 - 1)
    assert p.check(0) == 0 and p.check(2**32 - 1) == 2**32 - 1
    assert _error(p, -1) == "seed must be an integer in [0, 4294967295], got -1"
    assert _error(p, 2**32) == "seed must be an integer in [0, 4294967295], got 4294967296"


def test_a_ceiling_is_named_only_above_it_with_its_reason() -> None:
    p = Param("threads", "int", low=1, high=4, ceiling=True, why="the CPUs")
    assert _error(p, 0) == "threads must be an integer >= 1, got 0"
    assert _error(p, "x") == "threads must be an integer >= 1, got 'x'"
    assert _error(p, 5) == "threads must be an integer in [1, 4] (the CPUs), got 5"
    assert _error(p, 10**30).endswith(f"got {10**30}")  # no overflow on huge ints


def test_a_bound_may_be_read_at_check_time() -> None:
    most = [2]
    p = Param("n_envs", "int", low=1, high=lambda: most[0], ceiling=True)
    assert p.check(2) == 2
    most[0] = 1
    assert _error(p, 2) == "n_envs must be an integer in [1, 1], got 2"


def test_floats_accept_ints_as_floats_and_refuse_bools_text_and_non_finite() -> None:
    p = Param("lr", "float", low=0.0, low_open=True)
    assert p.check(1) == 1.0 and isinstance(p.check(1), float)
    assert _error(p, True) == "lr must be a number > 0, got True"
    assert _error(p, "abc") == "lr must be a number > 0, got 'abc'"
    assert _error(p, math.nan) == "lr must be a number > 0, got nan"
    assert _error(p, math.inf) == "lr must be a number > 0, got inf"
    assert _error(p, 10**400) == f"lr must be a number > 0, got {10**400}"
    assert _error(p, 0) == "lr must be > 0, got 0"
    assert _error(Param("x", "float"), "y") == "x must be a number, got 'y'"


def test_yaml_scientific_text_gets_a_hint() -> None:
    message = _error(Param("budget", "float"), "1e-1")
    assert message.startswith("budget must be a number, got '1e-1'")
    assert "write it with a dot, e.g. 0.1" in message
    assert parse_scientific("1e-3") == 0.001 and parse_scientific("abc") == "abc"


@pytest.mark.parametrize(
    ("low_open", "high_open", "inside", "outside", "text"),
    [
        (False, False, [0.0, 1.0], [-0.1, 1.1], "in [0, 1]"),
        (True, False, [1e-9, 1.0], [0.0, 1.1], "in (0, 1]"),
        (False, True, [0.0, 0.999], [1.0, -0.1], "in [0, 1)"),
        (True, True, [0.5], [0.0, 1.0], "in (0, 1)"),
    ],
)
def test_float_bounds_open_and_closed(low_open, high_open, inside, outside, text) -> None:
    p = Param("x", "float", low=0.0, high=1.0, low_open=low_open, high_open=high_open)
    for value in inside:
        assert p.check(value) == value
    for value in outside:
        assert _error(p, value) == f"x must be {text}, got {value!r}"


def test_the_out_of_range_message_can_take_another_wording() -> None:
    p = Param(
        "budget",
        "float",
        low=0.0,
        high=1.0,
        low_open=True,
        out_of_range="{label} {value} is outside {interval}",
    )
    assert _error(p, 1.5) == "budget 1.5 is outside (0, 1]"
    assert _error(p, "abc") == "budget must be a number in (0, 1], got 'abc'"


def test_bools_strings_choices_lists_and_null() -> None:
    assert Param("b", "bool").check(False) is False
    assert _error(Param("b", "bool"), 1) == "b must be true or false, got 1"
    assert _error(Param("s", "str"), 3) == "s must be a string, got 3"
    assert Param("s", "str", nullable=True).check(None) is None
    assert _error(Param("s", "str", nullable=True), 3) == "s must be a string or null, got 3"
    assert _error(Param("n", "int"), None) == "n must be an integer, got None"
    c = Param("norm", "choice", choices=("l1", "l2"))
    assert c.check("l2") == "l2"
    assert _error(c, "l3") == "unknown norm 'l3'; valid choices: l1, l2"
    assert Param("tiles", "list").check([[1, 2], [3]]) == ((1, 2), (3,))  # hashable
    assert _error(Param("tiles", "list"), 3) == "tiles must be a list, got 3"
    assert Param("x", "any").check(object) is object


def test_label_names_the_value_in_messages() -> None:
    p = Param("n_pe", "int")
    with pytest.raises(ValueError, match="^hardware parameter 'n_pe' must be an integer"):
        p.check("x", label="hardware parameter 'n_pe'")


def test_a_param_that_makes_no_sense_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        Param("x", "complex")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="choices go with kind 'choice'"):
        Param("x", "choice")
    with pytest.raises(ValueError, match="bounds apply to int and float"):
        Param("x", "str", low=1)


def test_describe_range_and_expected() -> None:
    assert describe_range(None, None) == ""
    assert describe_range(1, None) == ">= 1"
    assert describe_range(None, 5, high_open=True) == "< 5"
    assert describe_range(1e-6, 0.5, True) == "in (1e-06, 0.5]"
    assert Param("e", "int", 6, low=2, high=100, help="Points.").describe() == (
        "e: an integer in [2, 100] (default 6). Points."
    )


# --- Schema: a mapping of values -------------------------------------------------------


SCHEMA = Schema(
    (
        Param("episodes", "int", 300, low=1),
        Param("budget", "float", 0.5, low=0.0, high=1.0, low_open=True),
        Param("distill", "bool", False),
    )
)


def test_schema_fills_defaults_and_normalises_in_declaration_order() -> None:
    assert SCHEMA.check({}) == {"episodes": 300, "budget": 0.5, "distill": False}
    out = SCHEMA.check({"distill": True, "budget": 1})
    assert list(out) == ["episodes", "budget", "distill"]
    assert out == {"episodes": 300, "budget": 1.0, "distill": True}
    assert isinstance(out["budget"], float)
    assert SCHEMA.check({"budget": 1}, partial=True) == {"budget": 1.0}
    assert SCHEMA.defaults() == {"episodes": 300, "budget": 0.5, "distill": False}
    assert SCHEMA.names() == ["episodes", "budget", "distill"] and len(SCHEMA) == 3
    assert "budget" in SCHEMA and SCHEMA["budget"].kind == "float"


def test_schema_names_unknown_keys_and_the_first_bad_value_given() -> None:
    with pytest.raises(ValueError, match=r"^unknown parameter\(s\) a, b for x; valid: episodes,"):
        SCHEMA.check({"b": 1, "a": 2, "episodes": 1}, owner="x")
    with pytest.raises(ValueError, match=r"^unknown parameter\(s\) a; valid: \(none\)$"):
        Schema(()).check({"a": 1})
    with pytest.raises(ValueError, match="^distill must be true or false"):
        SCHEMA.check({"distill": 1, "episodes": 0})
    with pytest.raises(ValueError, match="^setting 'episodes' must be an integer >= 1, got 0"):
        SCHEMA.check({"episodes": 0}, label=lambda key: f"setting {key!r}")


def test_schema_refuses_a_name_declared_twice() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        Schema((Param("a", "int"), Param("a", "float")))


def test_schemas_typed_by_the_defaults_of_a_signature() -> None:
    assert [infer_kind(v) for v in (True, 1, 1.0, "s", (1,), None)] == [
        "bool",
        "int",
        "float",
        "str",
        "list",
        "any",
    ]

    def factory(workload, *, steps: int = 20, lr: float = 0.01, name=None) -> None: ...

    schema = Schema.from_signature(factory, skip=("workload",))
    assert schema.names() == ["steps", "lr", "name"]
    assert schema.check({"lr": 1, "name": 3}, partial=True) == {"lr": 1.0, "name": 3}
    with pytest.raises(ValueError, match="steps must be an integer, got 'x'"):
        schema.check({"steps": "x"})


# --- the settings built on it ------------------------------------------------------------


def test_search_and_task_fields_take_their_defaults_from_the_schemas() -> None:
    from agents.app.search import SEARCH_FIELDS, SearchConfig
    from agents.app.search_params import SEARCH_PARAMS
    from envs.spec import TASK_PARAMS, TaskSpec

    fields = {f.name: f for f in dataclasses.fields(SearchConfig)}
    assert set(SEARCH_PARAMS.names()) <= set(SEARCH_FIELDS)
    for param in SEARCH_PARAMS:
        assert fields[param.name].default == param.default, param.name
    task = {f.name: f.default for f in dataclasses.fields(TaskSpec)}
    for param in TASK_PARAMS:
        assert task[param.name] == param.default, param.name
    # A scalar field that is not in the schema would be checked by nothing.
    scalar = {n for n, f in fields.items() if f.default is not dataclasses.MISSING}
    assert scalar - set(SEARCH_PARAMS.names()) == {"budgets"}  # a pair: validate's own


def test_search_flags_take_their_defaults_and_help_from_the_schema() -> None:
    import typing

    import typer.main

    from agents.app.cli import app, search
    from agents.app.search_params import SEARCH_PARAMS

    command = typer.main.get_command(app)
    options = {p.name: p for p in command.commands["search"].params}
    hints = typing.get_type_hints(search)
    kinds = {"int": int, "float": float, "bool": bool, "str": str}
    for param in SEARCH_PARAMS:
        option = options[param.name]
        assert option.default == param.default, param.name
        assert option.help == param.help, param.name
        assert hints[param.name] is kinds[param.kind], param.name
    assert "--n-envs" in options["n_envs"].opts


def test_search_config_messages_keep_their_wording() -> None:
    from agents.app.search import SearchConfig

    cases = [
        ({"budget": 1.5}, "budget 1.5 is outside (0, 1]"),
        ({"episodes": 0}, "episodes must be an integer >= 1, got 0"),
        ({"seed": -1}, "seed must be an integer in [0, 4294967295], got -1"),
        ({"points": 1000}, "points must be an integer in [2, 100], got 1000"),
        ({"shortlist": -1}, "shortlist must be an integer >= 0, got -1"),
        ({"finetune_epochs": 10**6}, "finetune_epochs must be an integer in [0, 1000]"),
    ]
    for settings, message in cases:
        with pytest.raises(ValueError) as info:
            SearchConfig(agent="random", **settings)
        assert str(info.value).startswith(message), (settings, str(info.value))


def test_hardware_and_scheme_parameters_are_checked_by_their_schemas() -> None:
    from hwmodels import get_hardware
    from pruning import get_scheme

    hw = get_hardware("accel-kang-16", clock_hz=1, n_pe=8)
    assert hw.params.clock_hz == 1.0 and isinstance(hw.params.clock_hz, float)
    with pytest.raises(
        ValueError, match="^hardware parameter 'n_pe' of 'accel-kang-16' must be an integer"
    ):
        get_hardware("accel-kang-16", n_pe=True)
    with pytest.raises(ValueError, match=r"^unknown parameter\(s\) bogus for hardware 'accel"):
        get_hardware("accel-kang-16", bogus=1)
    with pytest.raises(ValueError, match="^scheme parameter 'group_size' of 'balanced' must be"):
        get_scheme("balanced", group_size="8")
    with pytest.raises(ValueError, match=r"^unknown parameter\(s\) x for scheme 'ikr'; valid: \("):
        get_scheme("ikr", x=1)
