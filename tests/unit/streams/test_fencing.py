"""Which departed owners a taker fences, decided from the offsets' metadata and the group."""

from __future__ import annotations

from streams.fencing import other_owners, owner_metadata, owner_of, owners_to_fence


def test_the_metadata_names_the_committing_transactional_id_and_nothing_else() -> None:
    assert owner_of(owner_metadata("kwf.orchestrator-host-1")) == "kwf.orchestrator-host-1"
    assert owner_of("") is None
    assert owner_of(None) is None
    # Metadata another client wrote (a worker's finished offsets, a tool) names no owner.
    assert owner_of('{"done": [3, 4]}') is None
    assert owner_of(owner_metadata("")) is None


def test_a_departed_owner_is_fenced_once_however_many_partitions_it_held() -> None:
    owners = ["g-dead", "g-dead", "g-alive", None, "g-me"]
    assert owners_to_fence(owners, own_id="g-me", live_ids={"g-me", "g-alive"}) == {"g-dead"}


def test_an_owner_still_in_the_group_gave_its_partitions_up_between_transactions() -> None:
    assert owners_to_fence(["g-a", "g-b"], own_id="g-me", live_ids={"g-me", "g-a", "g-b"}) == set()


def test_this_process_never_fences_itself() -> None:
    # A restart with the same ID fenced its predecessor when its producer started.
    assert owners_to_fence(["g-me"], own_id="g-me", live_ids=set()) == set()


def test_the_group_is_read_only_when_another_process_committed_last() -> None:
    # After a broker restart a lone process finds only its own commits: no admin request is made.
    assert other_owners(["g-me", None, "g-me"], own_id="g-me") == set()
    assert other_owners(["g-me", "g-other", None], own_id="g-me") == {"g-other"}
