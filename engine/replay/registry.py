"""Workflows and activities by name, registered the way ``dapr.ext.workflow.WorkflowRuntime`` does it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from engine.core.payload import input_annotation

F = TypeVar("F", bound=Callable[..., Any])

REGISTERED_NAME_ATTRIBUTE = "_kwf_registered_name"
"""Attribute set on a registered function: the name it was registered under."""

ALTERNATE_NAME_ATTRIBUTE = "_dapr_alternate_name"
"""Attribute ``alternate_name`` sets: the name to register the function under (Dapr's attribute)."""


def alternate_name(name: str | None = None) -> Callable[[F], F]:
    """Give a workflow or activity function the name it registers and is called by.

    Use it under the registering decorator (``@wfr.workflow`` then ``@alternate_name("x")``)
    or on a function registered later with ``register_workflow``/``register_activity``.

    Args:
        name: The name; default the function's ``__name__``.

    Raises:
        ValueError: The function already has an alternate name.
    """

    def give_name(fn: F) -> F:
        if hasattr(fn, ALTERNATE_NAME_ATTRIBUTE):
            raise ValueError(
                f"function {getattr(fn, '__name__', fn)!r} already has the alternate name "
                f"{getattr(fn, ALTERNATE_NAME_ATTRIBUTE)!r}; give it one name"
            )
        setattr(fn, ALTERNATE_NAME_ATTRIBUTE, name or fn.__name__)
        return fn

    return give_name


def name_of(fn_or_name: Callable[..., Any] | str) -> str:
    """The name a workflow or activity is known by.

    A string is the name itself; a registered function answers with the name it was
    registered under, one with an ``alternate_name`` with that; any other callable with
    its ``__name__``.
    """
    if isinstance(fn_or_name, str):
        return fn_or_name
    for attribute in (REGISTERED_NAME_ATTRIBUTE, ALTERNATE_NAME_ATTRIBUTE):
        registered = getattr(fn_or_name, attribute, None)
        if isinstance(registered, str):
            return registered
    name = getattr(fn_or_name, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"expected a workflow or activity function or its name, got {fn_or_name!r}")
    return name


@dataclass(frozen=True, slots=True)
class Registered:
    """One registered workflow or activity.

    Attributes:
        name: The registered name.
        fn: The user's function.
        takes_input: Whether the function accepts an input after the context.
        input_type: The input parameter's annotation, used to coerce decoded input; None if absent.
    """

    name: str
    fn: Callable[..., Any]
    takes_input: bool
    input_type: Any

    def call(self, ctx: Any, value: Any) -> Any:
        """Call the function with the context and, if it takes one, the input."""
        return self.fn(ctx, value) if self.takes_input else self.fn(ctx)


class Registry:
    """Workflows and activities by name.

    A function registers once per registry; its registered name is stored on it, so the
    function object itself can be passed wherever a name is expected (``call_activity``,
    ``call_child_workflow``, ``schedule_new_workflow``).
    """

    def __init__(self) -> None:
        # The application (KWF_APP_ID) whose processes run this code; the runtime sets it.
        self.app_id = ""
        self._workflows: dict[str, Registered] = {}
        self._activities: dict[str, Registered] = {}
        # Versioned workflows: name -> version name -> function, and each name's latest.
        self._versions: dict[str, dict[str, Registered]] = {}
        self._latest: dict[str, str] = {}

    @overload
    def workflow(self, fn: F, *, name: str | None = None) -> F: ...
    @overload
    def workflow(self, fn: None = None, *, name: str | None = None) -> Callable[[F], F]: ...

    def workflow(self, fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
        """Register a workflow; use as ``@reg.workflow`` or ``@reg.workflow(name="x")``."""
        if fn is None:
            return lambda f: self.workflow(f, name=name)
        self.register_workflow(fn, name=name)
        return fn

    @overload
    def activity(self, fn: F, *, name: str | None = None) -> F: ...
    @overload
    def activity(self, fn: None = None, *, name: str | None = None) -> Callable[[F], F]: ...

    def activity(self, fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
        """Register an activity; use as ``@reg.activity`` or ``@reg.activity(name="x")``."""
        if fn is None:
            return lambda f: self.activity(f, name=name)
        self.register_activity(fn, name=name)
        return fn

    def register_workflow(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        """Register a workflow function under ``name`` (default: its ``__name__``).

        Raises:
            ValueError: The function, or another function under that name, is already registered.
        """
        self._register(self._workflows, "workflow", fn, name)

    def register_activity(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        """Register an activity function (sync or ``async def``) under ``name`` (default: its ``__name__``).

        Raises:
            ValueError: The function, or another function under that name, is already registered.
        """
        self._register(self._activities, "activity", fn, name)

    def versioned_workflow(self, *, name: str, version_name: str | None = None,
                           is_latest: bool) -> Callable[[F], F]:
        """Register a version of a workflow; use as ``@reg.versioned_workflow(name="x", is_latest=True)``."""

        def register(fn: F) -> F:
            self.register_versioned_workflow(fn, name=name, version_name=version_name, is_latest=is_latest)
            return fn

        return register

    def register_versioned_workflow(self, fn: Callable[..., Any], *, name: str, version_name: str | None = None,
                                    is_latest: bool) -> None:
        """Register ``fn`` as one version of the workflow ``name``.

        New instances of ``name`` run the version registered with ``is_latest=True``; a
        running instance runs the version its history recorded when it started.

        Args:
            fn: The workflow function of this version.
            name: The workflow name that clients start and that versions share.
            version_name: This version's name, recorded in history; default ``fn.__name__``.
            is_latest: Whether new instances run this version (one version per name).

        Raises:
            ValueError: A plain workflow has that name, the version is registered already,
                another version is the latest, or the function is registered already.
        """
        if not callable(fn):
            raise TypeError(f"cannot register {fn!r} as a workflow: it is not callable")
        if not isinstance(name, str) or not name:
            raise ValueError("a versioned workflow needs a name: register_versioned_workflow(fn, name=...)")
        version = version_name if version_name is not None else getattr(fn, "__name__", None)
        if not isinstance(version, str) or not version:
            raise ValueError(f"cannot register {fn!r} as a version of {name!r}: give it a version_name")
        if name in self._workflows:
            raise ValueError(f"a workflow named {name!r} is registered without versions; register every "
                             "version with register_versioned_workflow")
        versions = self._versions.setdefault(name, {})
        if version in versions:
            raise ValueError(f"version {version!r} of workflow {name!r} is already registered")
        for entry in [*self._workflows.values(), *(e for vs in self._versions.values() for e in vs.values())]:
            if entry.fn is fn:
                raise ValueError(f"workflow function {getattr(fn, '__name__', fn)!r} is already registered; "
                                 "register each function once")
        if is_latest and name in self._latest:
            raise ValueError(f"workflow {name!r} already has a latest version, {self._latest[name]!r}; "
                             "mark one version is_latest=True")
        versions[version] = Registered(name=name, fn=fn, takes_input=_takes_input(fn),
                                       input_type=input_annotation(fn))
        if is_latest:
            self._latest[name] = version
        try:
            setattr(fn, REGISTERED_NAME_ATTRIBUTE, name)
        except (AttributeError, TypeError):
            pass

    def get_workflow(self, name: str) -> Registered | None:
        """The workflow registered under ``name`` without versions, or None."""
        return self._workflows.get(name)

    def is_versioned(self, name: str) -> bool:
        """Whether ``name`` was registered with ``register_versioned_workflow``."""
        return name in self._versions

    def latest_version(self, name: str) -> str | None:
        """The version new instances of ``name`` run, or None if no version is the latest."""
        return self._latest.get(name)

    def get_workflow_version(self, name: str, version: str) -> Registered | None:
        """Version ``version`` of the versioned workflow ``name``, or None."""
        return self._versions.get(name, {}).get(version)

    def workflow_versions(self, name: str) -> list[str]:
        """The version names registered for ``name``, in registration order."""
        return list(self._versions.get(name, {}))

    def get_activity(self, name: str) -> Registered | None:
        """The activity registered under ``name``, or None."""
        return self._activities.get(name)

    @property
    def workflow_names(self) -> list[str]:
        """Names of the registered workflows (versioned ones once), in registration order."""
        return [*self._workflows, *self._versions]

    @property
    def activity_names(self) -> list[str]:
        """Names of the registered activities, in registration order."""
        return list(self._activities)

    def _register(
        self, table: dict[str, Registered], kind: str, fn: Callable[..., Any], name: str | None
    ) -> None:
        if not callable(fn):
            raise TypeError(f"cannot register {fn!r} as a {kind}: it is not callable")
        alternate = getattr(fn, ALTERNATE_NAME_ATTRIBUTE, None)
        if name is not None and alternate is not None and name != alternate:
            raise ValueError(
                f"{kind} {alternate!r} has an alternate name and was registered as {name!r}; give it one name"
            )
        registered_name = name if name is not None else alternate if alternate is not None else getattr(
            fn, "__name__", None
        )
        if not isinstance(registered_name, str) or not registered_name:
            raise ValueError(f"cannot register {fn!r} as a {kind}: give it a name with name=...")
        for entry in table.values():
            if entry.fn is fn:
                raise ValueError(f"{kind} {entry.name!r} is already registered; register each function once")
        if registered_name in table or (table is self._workflows and registered_name in self._versions):
            raise ValueError(f"a {kind} named {registered_name!r} is already registered; pick another name")
        table[registered_name] = Registered(
            name=registered_name,
            fn=fn,
            takes_input=_takes_input(fn),
            input_type=input_annotation(fn),
        )
        try:
            setattr(fn, REGISTERED_NAME_ATTRIBUTE, registered_name)
        except (AttributeError, TypeError):
            # Bound methods and builtins take no attributes; they resolve by __name__ instead.
            pass


def _takes_input(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    positional = [
        p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
