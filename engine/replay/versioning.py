"""What an execution's history says about the code that may run it: version, patches, stall.

A versioned workflow's execution records the version it runs in a ``VersionMarker`` when it
starts; ``ctx.is_patched`` records each patch the first time the code passes it, in another.
Before a replay, ``preload`` reads them. When the runtime lacks the recorded version, or the
code no longer checks a recorded patch, the execution stalls instead of failing: it emits
``ExecutionStalled`` once (the instance becomes STALLED) and keeps a re-check timer
(``STALL_CHECK_TIMER_ID``) open, so the runtime that owns it tries again until one with the
right code replays it and emits ``ExecutionResumed``. Pure: the run calls in, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from engine.core.history import (
    STALL_CHECK_TIMER_ID,
    Event,
    ExecutionResumed,
    ExecutionStalled,
    FailureDetails,
    HistoryEvent,
    StallReason,
    TimerCreated,
    TimerFired,
    VersionMarker,
)
from engine.replay.registry import Registered, Registry

# A STALLED instance is tried again after this pause, doubling at each try up to the cap: a
# runtime with the right code picks it up within a minute of taking its partition, and a
# long stall adds two history events a minute at most.
STALL_CHECK_FIRST = timedelta(seconds=5)
STALL_CHECK_CAP = timedelta(seconds=60)


class Versioning:
    """One execution's version, patches and stall, as history recorded them and the code asks."""

    def __init__(self) -> None:
        self.version: str | None = None
        self._patches_recorded_at: dict[str, int] = {}  # -1: recorded by this run, not yet in history
        self._patch_answers: dict[str, bool] = {}
        self.stall: ExecutionStalled | None = None
        self._recorded_stall: ExecutionStalled | None = None
        self._check_open = False
        self._checks = 0

    @property
    def stall_failure(self) -> FailureDetails | None:
        """Why the execution is STALLED (type: a ``StallReason`` value), or None."""
        return None if self.stall is None else FailureDetails(self.stall.reason, self.stall.message)

    def preload(self, history: Iterable[HistoryEvent]) -> None:
        """Read the version and patches history recorded; call before replaying that history."""
        for event in history:
            body = event.event
            if isinstance(body, VersionMarker):
                if body.version is not None:
                    self.version = body.version
                if body.patch is not None:
                    self._patches_recorded_at.setdefault(body.patch, event.sequence)

    def note(self, body: Event) -> bool:
        """Take in an event of history that is about versioning; True if ``body`` was one."""
        if isinstance(body, VersionMarker):
            return True  # read by preload, or recorded by this run
        if isinstance(body, ExecutionStalled):
            self._recorded_stall = body
            return True
        if isinstance(body, ExecutionResumed) and self._recorded_stall is not None:
            self._recorded_stall = None  # the runtime ended the stall: not a user's resume
            return True
        if isinstance(body, TimerCreated) and body.timer_id == STALL_CHECK_TIMER_ID:
            self._check_open = True
            self._checks += 1
            return True
        if isinstance(body, TimerFired) and body.timer_id == STALL_CHECK_TIMER_ID:
            self._check_open = False
            return True
        return False

    # Versions --------------------------------------------------------------------------------

    def workflow_entry(self, registry: Registry, name: str, instance_id: str, *,
                       replaying: bool) -> tuple[Registered | None, VersionMarker | None]:
        """The function to run, and the marker to record for a new execution of a version.

        The recorded version, the latest for a new execution, or the plain registration.
        Stalls (see ``stall``) when a version is needed and not registered here.
        """
        if not registry.is_versioned(name):
            if self.version is not None and registry.get_workflow(name) is None:
                self._stall_on_version(registry, name, instance_id, f"version {self.version!r}")
            return registry.get_workflow(name), None
        marker = None
        version = self.version
        if version is None and replaying:
            self._stall_on_version(registry, name, instance_id, "a version (its history, written before the "
                                   "workflow had versions, records none)")
            return None, None
        if version is None:
            version = registry.latest_version(name)
            if version is None:
                self._stall_on_version(registry, name, instance_id, "its latest version (no version is "
                                       "registered with is_latest=True)")
                return None, None
            self.version = version
            marker = VersionMarker(version=version)
        entry = registry.get_workflow_version(name, version)
        if entry is None:
            self._stall_on_version(registry, name, instance_id, f"version {version!r}")
        return entry, marker

    def _stall_on_version(self, registry: Registry, name: str, instance_id: str, wanted: str) -> None:
        known = ", ".join(repr(v) for v in registry.workflow_versions(name)) or "none"
        self.stall_with(StallReason.VERSION_NOT_AVAILABLE,
                        f"workflow {name!r} (instance {instance_id!r}) needs {wanted}, which this runtime does not "
                        f"register (versions here: {known}); deploy code that registers it and the instance resumes")

    # Patches ---------------------------------------------------------------------------------

    def is_patched(self, name: str, *, replaying: bool) -> tuple[bool, VersionMarker | None]:
        """Whether the code takes patch ``name`` (the same answer for the whole run), and the
        marker to record when this is the first run through it."""
        answer = self._patch_answers.get(name)
        if answer is not None:
            return answer, None
        marker = None
        if name in self._patches_recorded_at:
            answer = True
        elif replaying:
            answer = False  # history written before the patch existed
        else:
            answer = True
            self._patches_recorded_at[name] = -1
            marker = VersionMarker(patch=name)
        self._patch_answers[name] = answer
        return answer, marker

    def unchecked_patches(self, before: int | None = None) -> list[str]:
        """Recorded patches the code has not checked (recorded before sequence ``before``, if given)."""
        return sorted(name for name, at in self._patches_recorded_at.items()
                      if name not in self._patch_answers and (before is None or at < before))

    def stall_on_patches(self, unchecked: list[str], workflow_name: str, instance_id: str) -> None:
        names = ", ".join(repr(n) for n in unchecked)
        self.stall_with(StallReason.PATCH_MISMATCH,
                        f"workflow {workflow_name!r} (instance {instance_id!r}) recorded patch {names} in its "
                        "history, but the code no longer checks it with ctx.is_patched; deploy code that keeps the "
                        "patch check and the instance resumes")

    # Stalls ----------------------------------------------------------------------------------

    def stall_with(self, reason: StallReason, message: str) -> None:
        self.stall = ExecutionStalled(reason.value, message)

    def end_stall_for_termination(self) -> None:
        """A stalled execution is being terminated: it needs neither a stall nor a resume."""
        self.stall = self._recorded_stall = None

    def stalled_actions(self, now: datetime) -> list[Event]:
        """What a stalled execution records: ExecutionStalled once, and an open re-check timer."""
        assert self.stall is not None
        actions: list[Event] = []
        if self._recorded_stall != self.stall:
            actions.append(self.stall)
            self._recorded_stall = self.stall
        if not self._check_open:
            pause = min(STALL_CHECK_FIRST * (2 ** min(self._checks, 16)), STALL_CHECK_CAP)
            actions.append(TimerCreated(STALL_CHECK_TIMER_ID, now + pause))
            self._check_open = True
            self._checks += 1
        return actions

    def resumed_action(self) -> ExecutionResumed | None:
        """An ExecutionResumed when history recorded a stall that this run is past, else None."""
        if self._recorded_stall is None:
            return None
        resumed = ExecutionResumed(f"the code is available again ({self._recorded_stall.reason} resolved)")
        self._recorded_stall = None
        return resumed
