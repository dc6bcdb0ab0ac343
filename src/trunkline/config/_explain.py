"""Documentation of every key of the project file, read from the models' field descriptions.

The field descriptions are the single source: ``trunkline config explain`` prints what
:func:`explain` returns, so a key cannot be documented differently from how it validates.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, NamedTuple

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from trunkline.config._typing import (
    literal_values,
    mapping_value,
    model_class,
    sequence_item,
    strip,
    union_members,
)


@dataclass(frozen=True, slots=True)
class TypeDoc:
    """``Annotated`` metadata telling :func:`explain` how to name a type and show its values.

    ``flat`` marks a field whose own keys sit beside its siblings' in the file (a connector's
    settings next to its ``type``); they depend on the value, so they are documented elsewhere.
    """

    label: str
    show: Callable[[Any], str] | None = None
    flat: bool = False


class KeyDoc(NamedTuple):
    """One documented key: its dotted path (``<name>`` stands for any name), type, default."""

    key: str
    type: str
    default: str
    description: str


_SCALAR_LABELS: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    SecretStr: "secret string",
}


def explain(model: type[BaseModel], prefix: str = "") -> list[KeyDoc]:
    """Every key ``model`` accepts, nested sections included, in declaration order.

    Example:
        >>> from trunkline.config import TopicSpec
        >>> explain(TopicSpec)[1][:3]
        ('retention', "duration | 'forever'", '7d')
    """
    rows: list[KeyDoc] = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        doc = _type_doc(field)
        if doc is not None and doc.flat:
            rows.append(KeyDoc(f"{prefix}<key>", doc.label, "", field.description or ""))
            continue
        rows.append(
            KeyDoc(
                key, _label(field.annotation, doc), _default(field, doc), field.description or ""
            )
        )
        rows.extend(_nested(field.annotation, key, field.discriminator))
    return rows


def _type_doc(field: FieldInfo) -> TypeDoc | None:
    metadata = [*field.metadata, *strip(field.annotation)[1]]
    return next((m for m in metadata if isinstance(m, TypeDoc)), None)


def _label(annotation: Any, doc: TypeDoc | None = None) -> str:
    if doc is not None:
        return doc.label
    bare, metadata = strip(annotation)
    inner_doc = next((m for m in metadata if isinstance(m, TypeDoc)), None)
    if inner_doc is not None:
        return inner_doc.label
    if model_class(bare) is not None or mapping_value(bare) is not None:
        return "mapping"
    if members := union_members(bare):
        labels = dict.fromkeys(_label(m) for m in members)
        return " | ".join(labels)
    if values := literal_values(bare):
        return " | ".join(repr(v) for v in values)
    if isinstance(bare, type) and issubclass(bare, enum.Enum):
        return " | ".join(repr(m.value) for m in bare)
    if (item := sequence_item(bare)) is not None:
        return f"list of {_label(item)}"
    if isinstance(bare, type) and issubclass(bare, PurePath):
        return "path"
    return _SCALAR_LABELS.get(bare, getattr(bare, "__name__", str(bare)))


def _default(field: FieldInfo, doc: TypeDoc | None) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True, validated_data={})
    if isinstance(value, BaseModel):
        return ""  # a section: its keys follow with their own defaults
    if value is None and doc not in field.metadata:
        return "none"  # an optional field left out, not the type's own "no limit" keyword
    if doc is not None and doc.show is not None:
        return doc.show(value)
    return _show(value)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, SecretStr):
        # Defaults are written in the code, not taken from the environment: not secret.
        return value.get_secret_value()
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _nested(annotation: Any, key: str, discriminator: Any) -> list[KeyDoc]:
    bare, _ = strip(annotation)
    if (model := model_class(bare)) is not None:
        return explain(model, f"{key}.")
    if (value := mapping_value(bare)) is not None:
        return _nested(value, f"{key}.<name>", None)
    members = union_members(bare)
    if members and isinstance(discriminator, str):
        rows: list[KeyDoc] = []
        for member in members:
            member_model = model_class(strip(member)[0])
            if member_model is None:
                continue
            tag = literal_values(strip(member_model.model_fields[discriminator].annotation)[0])
            for row in explain(member_model, f"{key}."):
                # With several variants the same key can mean different things per variant.
                note = f"({discriminator}: {tag[0]}) " if len(members) > 1 and tag else ""
                rows.append(row._replace(description=note + row.description))
        return rows
    return []
