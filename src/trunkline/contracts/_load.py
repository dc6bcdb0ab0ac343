"""Loading a contract file with every problem placed at its file, line and column.

The YAML reading and the wording of validation errors are the project file's
(:mod:`trunkline.config._yaml`, :mod:`trunkline.config._translate`); the contract adds the
checks pydantic cannot make alone (rules on unknown fields, regexes and SQL that do not
compile), placed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from trunkline.config._problems import Problem
from trunkline.config._translate import translate
from trunkline.config._yaml import Document, KeyPath, Position, read_document
from trunkline.contracts._model import Contract
from trunkline.contracts._rules import Issue, Rule, compile_rules
from trunkline.errors import InvalidContract

_TOP = (
    "expected an ODCS data contract: a mapping with apiVersion, kind: DataContract, id, "
    "version, status and schema",
    "the top level holds apiVersion, kind, id, version, status, schema...",
)


@dataclass(frozen=True, slots=True)
class LoadedContract:
    """A valid contract with its compiled rules and the document it came from."""

    contract: Contract
    rules: tuple[Rule, ...]
    document: Document

    def position(self, path: KeyPath, *, key: bool = False) -> Position | None:
        return place(self.document, path, key=key)


def load_contract(path: Path | str) -> Contract:
    """Load and check a contract file.

    Raises:
        InvalidContract: everything wrong with it, each problem with file:line:column.

    Example:
        >>> contract = load_contract("contracts/orders.yaml")  # doctest: +SKIP
        >>> contract.object.field("amount").logical_type  # doctest: +SKIP
        'number'
    """
    return read_contract(Path(path)).contract


def read_contract(file: Path) -> LoadedContract:
    """:func:`load_contract`, keeping the rules and the positions (for lint and reports)."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _error([Problem(file, None, None, "contract file not found")]) from None
    except UnicodeDecodeError as exc:
        problem = Problem(file, None, None, f"the file is not UTF-8 text (byte {exc.start})")
        raise _error([problem]) from None
    except OSError as exc:
        problem = Problem(file, None, None, f"cannot read the file: {exc.strerror or exc}")
        raise _error([problem]) from None
    return parse_document(text, file)


def parse_contract(text: str, path: Path | str = "<contract>") -> Contract:
    """Parse contract YAML given as text; raises InvalidContract like :func:`load_contract`."""
    return parse_document(text, Path(path)).contract


def parse_document(text: str, path: Path) -> LoadedContract:
    doc = read_document(text, path=path, env=None, what="contract file", top=_TOP)
    problems = list(doc.problems)
    contract = None
    if doc.data is not None:
        try:
            contract = Contract.model_validate(doc.data)
        except ValidationError as exc:
            problems.extend(translate(exc, doc, Contract))
    rules: list[Rule] = []
    if contract is not None and not problems:
        rules, issues = compile_rules(contract)
        problems.extend(_placed(doc, issue) for issue in issues)
    if problems or contract is None:
        raise _error(problems)
    return LoadedContract(contract, tuple(rules), doc)


def place(doc: Document, path: KeyPath, *, key: bool = False) -> Position | None:
    """Where ``path`` is written (its key or its value), or the nearest enclosing part."""
    found = (doc.keys if key else doc.values).get(path)
    if found is not None:
        return found
    for end in range(len(path), -1, -1):
        at = doc.values.get(path[:end]) or doc.keys.get(path[:end])
        if at is not None:
            return at
    return None


def _placed(doc: Document, issue: Issue) -> Problem:
    at = place(doc, issue.path, key=issue.key)
    line, column = (at.line, at.column) if at else (None, None)
    return Problem(doc.path, line, column, issue.message, issue.hint)


def _error(problems: list[Problem]) -> InvalidContract:
    ordered = tuple(sorted(set(problems), key=lambda p: (p.line or 0, p.column or 0, p.message)))
    return InvalidContract("\n".join(str(p) for p in ordered), problems=ordered)
