"""Which partitions a process follows as a standby, decided from the group's assignment,
and how often that assignment is asked for."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.standby import StandbyReplicas, standby_partitions


def test_with_two_processes_and_one_replica_each_follows_the_others_partitions() -> None:
    assignments = {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7]}
    assert standby_partitions(assignments, "a", 1) == {4, 5, 6, 7}
    assert standby_partitions(assignments, "b", 1) == {0, 1, 2, 3}


def test_each_partition_has_as_many_copies_as_replicas_and_none_on_its_owner() -> None:
    assignments = {"a": [0, 1], "b": [2, 3], "c": [4, 5], "d": [6, 7]}
    for replicas in (1, 2, 3):
        copies: dict[int, int] = {}
        for member, owned in assignments.items():
            followed = standby_partitions(assignments, member, replicas)
            assert not followed & set(owned)
            for partition in followed:
                copies[partition] = copies.get(partition, 0) + 1
        assert copies == {p: replicas for p in range(8)}


def test_more_replicas_than_other_processes_copies_each_partition_once_per_other() -> None:
    assert standby_partitions({"a": [0], "b": [1], "c": [2]}, "a", 5) == {1, 2}


def test_alone_or_without_replicas_or_outside_the_group_nothing_is_followed() -> None:
    assert standby_partitions({"a": [0, 1]}, "a", 1) == set()
    assert standby_partitions({"a": [0], "b": [1]}, "a", 0) == set()
    assert standby_partitions({"a": [0], "b": [1]}, "z", 1) == set()


def test_a_member_between_assignments_owning_nothing_follows_its_predecessor() -> None:
    assert standby_partitions({"a": [0, 1, 2], "b": []}, "b", 1) == {0, 1, 2}
    assert standby_partitions({"a": [0, 1, 2], "b": []}, "a", 1) == set()


class Group:
    members: list = []


class CountingAdmin:
    """Answers every describe at once with an empty group; counts the requests."""

    def __init__(self) -> None:
        self.asked = 0

    def describe_consumer_groups(self, groups: list[str], **_: object) -> dict:
        self.asked += 1
        answer: concurrent.futures.Future = concurrent.futures.Future()
        answer.set_result(Group())
        return {groups[0]: answer}


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[StandbyReplicas, CountingAdmin]]:
    standby = StandbyReplicas({"bootstrap.servers": "127.0.0.1:1"}, "t.history", "g", "me", 1,
                              lambda p: tmp_path / str(p))
    admin = CountingAdmin()
    standby._admin_client = lambda: admin  # type: ignore[method-assign, assignment, return-value]
    yield standby, admin
    standby.close()


def test_the_assignment_is_asked_for_at_most_once_per_interval_not_every_turn(
        replicas: tuple[StandbyReplicas, CountingAdmin]) -> None:
    standby, admin = replicas
    for _ in range(50):
        standby.refresh(set())
    assert admin.asked == 1


def test_after_a_rebalance_the_assignment_is_asked_for_at_once(
        replicas: tuple[StandbyReplicas, CountingAdmin]) -> None:
    standby, admin = replicas
    standby.refresh(set())  # asks
    standby.refresh(set())  # reads the answer
    standby.refresh(set())  # within the interval: nothing
    assert admin.asked == 1
    standby.refresh_soon()
    standby.refresh(set())
    assert admin.asked == 2
