"""Immutable result records: what ``@dataclass(frozen=True)`` gives, without importing
:mod:`dataclasses` (which imports :mod:`inspect`, :mod:`ast` and :mod:`tokenize`: about 8 ms,
two fifths of ``import uv_ffi`` in a new interpreter).

A record class lists its fields as annotations, in order, with optional defaults
(``Factory(list)`` for a fresh mutable default). It gets ``__init__`` (positional or keyword),
``__repr__``, ``__eq__``, ``__hash__`` over the fields, and refuses attribute assignment.
``_make(values)`` builds one from a dict that holds every field, unchecked, for hot paths.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

__all__ = ["Factory", "record"]

_MISSING = object()


class Factory:
    """A default made fresh for each record (as ``field(default_factory=...)``)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def _fields_of(cls: type) -> Tuple[Tuple[str, Any], ...]:
    """``(name, default)`` for each annotated field of ``cls``, in order, bases first."""
    fields: Dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for name in klass.__dict__.get("__annotations__", {}):
            fields[name] = klass.__dict__.get(name, _MISSING)
    return tuple(fields.items())


def record(cls: type) -> type:
    """Make ``cls`` an immutable record of its annotated fields (see the module comment)."""
    fields = _fields_of(cls)
    names = tuple(name for name, _ in fields)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(fields):
            raise TypeError("%s() takes %d arguments, %d given" % (cls.__name__, len(fields), len(args)))
        unknown = set(kwargs) - set(names)
        if unknown:
            raise TypeError("%s() got unexpected arguments: %s" % (cls.__name__, ", ".join(sorted(unknown))))
        for index, (name, default) in enumerate(fields):
            if index < len(args):
                if name in kwargs:
                    raise TypeError("%s() got two values for %r" % (cls.__name__, name))
                value = args[index]
            elif name in kwargs:
                value = kwargs[name]
            elif isinstance(default, Factory):
                value = default.make()
            elif default is not _MISSING:
                value = default
            else:
                raise TypeError("%s() missing argument %r" % (cls.__name__, name))
            object.__setattr__(self, name, value)

    def values(self: Any) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in names)

    def __repr__(self: Any) -> str:
        shown = ", ".join("%s=%r" % (name, getattr(self, name)) for name in names)
        return "%s(%s)" % (type(self).__qualname__, shown)

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return values(self) == values(other)

    def __hash__(self: Any) -> int:
        return hash(values(self))

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise AttributeError("cannot assign to field %r: %s is immutable" % (name, cls.__name__))

    def __delattr__(self: Any, name: str) -> None:
        raise AttributeError("cannot delete field %r: %s is immutable" % (name, cls.__name__))

    def _make(klass: type, values: Dict[str, Any]) -> Any:
        # For the hot path that fills every field itself (the reply of each call): one dict
        # update instead of __init__'s per-field checks.
        self = object.__new__(klass)
        self.__dict__.update(values)
        return self

    for name, default in fields:
        # Class attributes holding defaults would shadow nothing (instances set every field),
        # but a Factory left there would read as a value.
        if isinstance(default, Factory):
            delattr(cls, name)
    methods = dict(__init__=__init__, __repr__=__repr__, __eq__=__eq__, __hash__=__hash__,
                   __setattr__=__setattr__, __delattr__=__delattr__)
    for name, method in methods.items():
        method.__qualname__ = "%s.%s" % (cls.__qualname__, name)
        setattr(cls, name, method)
    cls._make = classmethod(_make)
    cls.__match_args__ = names
    cls._fields = names
    return cls
