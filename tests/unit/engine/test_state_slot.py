"""Every runtime process from one folder gets a state folder and identity of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.state.config import Settings, default_process_id
from engine.state.state_slot import NoFreeSlot, claim_slot, settle_identity


def test_each_claim_takes_the_lowest_free_slot_and_a_released_one_is_taken_again(tmp_path: Path) -> None:
    first, second = claim_slot(tmp_path), claim_slot(tmp_path)
    assert (first.number, second.number) == (0, 1)
    assert first.folder == tmp_path / "slot-0"
    first.release()
    again = claim_slot(tmp_path)
    assert again.number == 0
    with pytest.raises(NoFreeSlot, match="KWF_STATE_DIR"):
        claim_slot(tmp_path, limit=2)
    second.release()
    again.release()


def test_a_process_without_a_state_folder_of_its_own_gets_a_slot_and_a_stable_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KWF_STATE_DIR", raising=False)
    monkeypatch.delenv("KWF_PROCESS_ID", raising=False)
    configured = Settings.from_env()
    assert configured.per_process_state
    one, slot_one = settle_identity(configured)
    two, slot_two = settle_identity(configured)
    assert (one.state_dir, two.state_dir) == (Path(".kwf/state/slot-0"), Path(".kwf/state/slot-1"))
    assert one.process_id != two.process_id
    # Restarted (its slot free again), the first gets its folder and identity back.
    slot_one.release()  # type: ignore[union-attr]
    back, slot_back = settle_identity(configured)
    assert (back.state_dir, back.process_id) == (one.state_dir, one.process_id)
    assert back.process_id == default_process_id(tmp_path / ".kwf/state/slot-0")
    for slot in (slot_two, slot_back):
        slot.release()  # type: ignore[union-attr]


def test_explicit_settings_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KWF_STATE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("KWF_PROCESS_ID", "p7")
    settings, slot = settle_identity(Settings.from_env())
    assert slot is None
    assert (settings.state_dir, settings.process_id) == (tmp_path / "mine", "p7")

    monkeypatch.delenv("KWF_STATE_DIR")
    monkeypatch.chdir(tmp_path)
    settings, slot = settle_identity(Settings.from_env())
    assert slot is not None and settings.state_dir == Path(".kwf/state/slot-0") and settings.process_id == "p7"
    slot.release()
