import pytest

from scheduler.placement.constraints import (
    Constraint, ConstraintError, FieldCounts, Operator, field_value, matches, parse,
)


def test_parses_marathon_and_metronome_shapes():
    assert parse([["hostname", "UNIQUE"], ["rack", "GROUP_BY", "3"]]) == [
        Constraint("hostname", Operator.UNIQUE), Constraint("rack", Operator.GROUP_BY, "3")]
    assert parse([{"attribute": "zone", "operator": "EQ", "value": "z1"}]) == [
        Constraint("zone", Operator.IS, "z1")]
    assert Constraint("rack", Operator.LIKE, "a.*").to_marathon() == ["rack", "LIKE", "a.*"]


@pytest.mark.parametrize("raw, path", [
    ([["hostname", "NEAR"]], "constraints(0)"),
    ([["rack", "LIKE"]], "constraints(0)"),
    ([["hostname", "UNIQUE"], ["rack", "MAX_PER", "x"]], "constraints(1)"),
    ([["rack", "LIKE", "("]], "constraints(0)"),
    ([["rack"]], "constraints(0)"),
])
def test_rejects_bad_constraints_naming_the_element(raw, path):
    with pytest.raises(ConstraintError) as info:
        parse(raw)
    assert info.value.path == path


def counts(**values: int) -> FieldCounts:
    return FieldCounts(dict(values))


def test_unique_and_max_per_count_tasks_per_value():
    unique = Constraint("hostname", Operator.UNIQUE)
    assert matches(unique, "h1", counts())
    assert not matches(unique, "h1", counts(h1=1))
    max_per = Constraint("rack", Operator.MAX_PER, "2")
    assert matches(max_per, "a", counts(a=1))
    assert not matches(max_per, "a", counts(a=2))


def test_cluster_pins_to_value_or_first_task():
    assert matches(Constraint("rack", Operator.CLUSTER, "a"), "a", None)
    assert not matches(Constraint("rack", Operator.CLUSTER, "a"), "b", None)
    free = Constraint("rack", Operator.CLUSTER)
    assert matches(free, "b", counts())
    assert not matches(free, "b", counts(a=1))


def test_group_by_fills_the_smallest_group():
    group_by = Constraint("rack", Operator.GROUP_BY)
    assert matches(group_by, "c", counts(a=1, b=1), known_values=3)
    assert not matches(group_by, "a", counts(a=1), known_values=2)  # b still empty
    assert matches(group_by, "b", counts(a=2, b=1), known_values=2)
    assert not matches(group_by, "a", counts(a=2, b=1), known_values=2)


def test_like_unlike_is_and_missing_attributes():
    assert matches(Constraint("rack", Operator.LIKE, "r[12]"), "r1", None)
    assert not matches(Constraint("rack", Operator.LIKE, "r[12]"), "r10", None)  # full match
    assert matches(Constraint("rack", Operator.UNLIKE, "r[12]"), "r3", None)
    assert matches(Constraint("rack", Operator.IS, "r3"), "r3", None)
    # Without the attribute only UNLIKE matches (Marathon's rule).
    assert matches(Constraint("rack", Operator.UNLIKE, "x"), None, None)
    for op, value in ((Operator.IS, "x"), (Operator.LIKE, "x"), (Operator.UNIQUE, None)):
        assert not matches(Constraint("rack", op, value), None, counts())


def test_field_values():
    assert field_value("hostname", "h1", {}) == "h1"
    assert field_value("@zone", "h1", {"zone": "z1"}) == "z1"
    assert field_value("rack", "h1", {}) is None
