"""Reading field annotations: shared by ``config explain`` and by error placement."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

NONE_TYPE = type(None)


def strip(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """The annotation without ``Annotated`` and ``Optional``, and the metadata found on the way.

    Metadata of the outer layers comes first, like pydantic reads it.
    """
    metadata: list[Any] = []
    while True:
        if get_origin(annotation) is Annotated:
            annotation, *extra = get_args(annotation)
            metadata.extend(extra)
            continue
        members = union_members(annotation)
        if members and NONE_TYPE in members:
            rest = tuple(m for m in members if m is not NONE_TYPE)
            if len(rest) == 1:
                annotation = rest[0]
                continue
        return annotation, tuple(metadata)


def union_members(annotation: Any) -> tuple[Any, ...]:
    """The members of a ``Union`` / ``X | Y`` annotation, or ``()`` for anything else."""
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return ()


def model_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an (already stripped) annotation names, if it names one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def mapping_value(annotation: Any) -> Any | None:
    """The value type of ``dict[K, V]`` / ``Mapping[K, V]``, or None for other annotations."""
    origin = get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, Mapping):
        args = get_args(annotation)
        return args[1] if len(args) == 2 else Any
    return None


def sequence_item(annotation: Any) -> Any | None:
    """The item type of ``list[X]`` / ``tuple[X, ...]``, or None for other annotations."""
    origin = get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, Sequence) and origin is not str:
        args = get_args(annotation)
        return args[0] if args else Any
    return None


def literal_values(annotation: Any) -> tuple[Any, ...]:
    """The allowed values of a ``Literal[...]`` annotation, or ``()``."""
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def union_member_for(members: Sequence[Any], discriminator: str, tag: Any) -> Any | None:
    """The member of a discriminated union whose ``discriminator`` field accepts ``tag``."""
    for member in members:
        model = model_class(strip(member)[0])
        field = model.model_fields.get(discriminator) if model else None
        if field is not None and tag in literal_values(strip(field.annotation)[0]):
            return member
    return None
