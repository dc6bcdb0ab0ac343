"""The base of every project-file model, and how values from the environment stay hidden."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ModelWrapValidatorHandler, PrivateAttr, model_validator


class EnvValue(str):
    """A string that was built (at least partly) from ``${VAR}`` references.

    The loader hands these to validation instead of plain strings so that models can tell
    which of their values came from the environment: such values are secrets and never
    appear in a repr or an error message.
    """

    variables: tuple[str, ...]

    def __new__(cls, value: str, variables: tuple[str, ...]) -> Self:
        self = super().__new__(cls, value)
        self.variables = variables
        return self

    def __repr__(self) -> str:
        return _hidden_text(self.variables)


class _Hidden:
    """Stands in for a value in a model's repr."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


def _hidden_text(variables: tuple[str, ...]) -> str:
    names = ", ".join(f"${{{name}}}" for name in variables)
    return f"<hidden: from {names}>" if names else "<hidden>"


class ConfigModel(BaseModel):
    """Base of every model read from a project file; connector ``Config`` models extend it.

    Frozen, and strict about keys (an unknown key is an error). Fields whose value came from
    ``${VAR}`` show as ``<hidden: from ${VAR}>`` in ``repr()`` and ``str()``; the values
    themselves are unchanged.

    Example:
        >>> from pydantic import Field
        >>> class Config(ConfigModel):
        ...     dsn: str = Field(description="where the database is")
        >>> Config.model_validate({"dsn": EnvValue("postgresql://u:pw@h/db", ("DSN",))})
        Config(dsn=<hidden: from ${DSN}>)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    _env_fields: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_env_fields(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        model = handler(data)
        if isinstance(data, Mapping):
            hidden = {}
            for name, field in cls.model_fields.items():
                variables = _env_variables(data.get(field.alias or name))
                # Nested project models hide their own fields; hiding them here too would
                # blank out whole sections whenever one value in them comes from ${VAR}.
                if variables and not _hides_itself(getattr(model, name)):
                    hidden[name] = variables
            if hidden:
                model._env_fields = hidden
        return model

    def __eq__(self, other: object) -> bool:
        # Where a value came from is for display only: equal values make equal models.
        if not isinstance(other, ConfigModel) or type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__ and _compared(self) == _compared(other)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            variables = self._env_fields.get(name) if name else None
            yield name, (_Hidden(_hidden_text(variables)) if variables else value)


def _compared(model: ConfigModel) -> dict[str, Any]:
    private = model.__pydantic_private__ or {}
    return {name: value for name, value in private.items() if name != "_env_fields"}


def _env_variables(value: Any) -> tuple[str, ...]:
    """The ``${VAR}`` names that went into ``value``, searched through lists and mappings."""
    if isinstance(value, EnvValue):
        return value.variables
    found: list[str] = []
    if isinstance(value, Mapping):
        for item in value.values():
            found.extend(_env_variables(item))
    elif isinstance(value, list | tuple):
        for item in value:
            found.extend(_env_variables(item))
    return tuple(dict.fromkeys(found))


def _hides_itself(value: Any) -> bool:
    if isinstance(value, ConfigModel):
        return True
    if isinstance(value, Mapping) and value:
        return all(isinstance(v, ConfigModel) for v in value.values())
    return False
