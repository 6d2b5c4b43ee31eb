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
        self._workflows: dict[str, Registered] = {}
        self._activities: dict[str, Registered] = {}

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

    def get_workflow(self, name: str) -> Registered | None:
        """The workflow registered under ``name``, or None."""
        return self._workflows.get(name)

    def get_activity(self, name: str) -> Registered | None:
        """The activity registered under ``name``, or None."""
        return self._activities.get(name)

    @property
    def workflow_names(self) -> list[str]:
        """Names of the registered workflows, in registration order."""
        return list(self._workflows)

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
        if registered_name in table:
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
