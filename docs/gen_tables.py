"""Regenerate the key tables of docs/config.md from their declarations.

    python docs/gen_tables.py           # rewrite docs/config.md in place
    python docs/gen_tables.py --check   # exit 1 (and say so) if it is out of date

A generated table sits between the lines

    <!-- BEGIN GENERATED TABLE: <label> -->
    <!-- END GENERATED TABLE -->

and is exactly :meth:`jaxpot.config.Table.markdown` of the table that
``label`` names; everything outside these blocks (the prose) is left alone.
The label is the table's ``Table.name`` (``[fit]``, ``[potential] kind =
'mace'``); ``<Table.name> (<source>)`` names it too, and is the only label
of a table whose name another table shares (``[output]`` of ``jaxpot md``
and of ``jaxpot train``): the source is the module that declares it, or
``kind <name>`` for a potential kind.

The tables are discovered, none is listed here: every module-level
:class:`~jaxpot.config.Table` of :mod:`jaxpot.simulate.config` (when that
module exists), :mod:`jaxpot.minimize` and :mod:`jaxpot.training.config`, and the ``table`` of every
potential kind's :class:`~jaxpot.potentials.registry.KindSpec` that has one.
tests/test_config_tables.py checks that docs/config.md is in sync and shows
every table discovered here.
"""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_MD = ROOT / "docs" / "config.md"
CONFIG_MODULES = ("jaxpot.simulate.config", "jaxpot.minimize", "jaxpot.training.config")
BEGIN = "<!-- BEGIN GENERATED TABLE: {} -->"
END = "<!-- END GENERATED TABLE -->"
_BLOCK = re.compile(r"^<!-- BEGIN GENERATED TABLE: (?P<label>.+?) -->\n(?P<body>.*?)^" + re.escape(END) + r"$",
                    re.M | re.S)


def discover() -> list[tuple[str, object]]:
    """(source, Table) of every table that has a generated reference, in
    docs order: the config modules' tables in declaration order, then the
    potential kinds' tables by kind name."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))          # the checkout's jaxpot, also when run as a script
    from jaxpot.config import Table
    from jaxpot.potentials import registry

    found, seen = [], set()
    for name in CONFIG_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:                 # the module does not exist (yet): nothing to show
                continue
            raise
        for value in vars(module).values():
            if isinstance(value, Table) and id(value) not in seen:
                seen.add(id(value))
                found.append((name, value))
    for kind in registry.names():
        if kind == registry.COMPOSITE:
            continue
        table = registry.spec(kind).table
        if table is not None and id(table) not in seen:
            seen.add(id(table))
            found.append((f"kind {kind}", table))
    return found


def labelled_tables() -> dict[str, object]:
    """label -> Table: ``<name> (<source>)`` for every table, and the bare
    ``<name>`` for every table whose name is unique."""
    found = discover()
    counts: dict[str, int] = {}
    for _, table in found:
        counts[table.name] = counts.get(table.name, 0) + 1
    labels = {}
    for source, table in found:
        labels[f"{table.name} ({source})"] = table
        if counts[table.name] == 1:
            labels[table.name] = table
    return labels


def render(text: str, labels: dict | None = None) -> str:
    """``text`` with every generated block rewritten from its table
    (ValueError for a block whose label names no table)."""
    labels = labelled_tables() if labels is None else labels
    if text.count("<!-- BEGIN GENERATED TABLE:") != len(_BLOCK.findall(text)):
        raise ValueError("docs/config.md: a BEGIN GENERATED TABLE line without its END line")

    def block(m):
        label = m.group("label")
        if label not in labels:
            raise ValueError(f"docs/config.md: no table is labelled {label!r} (known: {', '.join(labels)})")
        return f"{BEGIN.format(label)}\n{labels[label].markdown()}\n{END}"

    return _BLOCK.sub(block, text)


def shown_labels(text: str) -> list[str]:
    """The labels of the generated blocks of ``text``, in order."""
    return [m.group("label") for m in _BLOCK.finditer(text)]


def main(argv: list[str]) -> int:
    text = CONFIG_MD.read_text()
    new = render(text)
    if "--check" in argv:
        if new != text:
            print("docs/config.md is out of date: run `python docs/gen_tables.py`")
            return 1
        return 0
    if new != text:
        CONFIG_MD.write_text(new)
        print(f"rewrote {CONFIG_MD.relative_to(ROOT)}")
    else:
        print(f"{CONFIG_MD.relative_to(ROOT)} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
