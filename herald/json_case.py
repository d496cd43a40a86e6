"""camelCase keys for the JSON documents the CLI prints, like every other Herald JSON (the wire format, receipts)."""

from __future__ import annotations

from typing import Any


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_keys(value: Any) -> Any:
    """The same document with every dict key in camelCase (dataclasses.asdict gives snake_case)."""
    if isinstance(value, dict):
        return {camel(str(k)): camel_keys(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [camel_keys(v) for v in value]
    return value


def camel_document(document: dict[str, Any]) -> dict[str, Any]:
    return {camel(str(k)): camel_keys(v) for k, v in document.items()}
