"""Refresh the tables of README.md between ``<!-- table:PATH -->`` and ``<!-- /table -->`` from results/PATH
(tables only).

    python experiments/fwi_refine/fill_tables.py
"""

from __future__ import annotations

import re
from pathlib import Path

from fwi.atomic import write_text

HERE = Path(__file__).resolve().parent


def main() -> None:
    readme = HERE / "README.md"

    def table(match: re.Match) -> str:
        rows = [line for line in (HERE / "results" / match[1]).read_text().splitlines() if line.startswith("|")]
        return f"<!-- table:{match[1]} -->\n" + "\n".join(rows) + "\n<!-- /table -->"

    text = re.sub(r"<!-- table:(\S+) -->.*?<!-- /table -->", table, readme.read_text(), flags=re.S)
    write_text(readme, text)


if __name__ == "__main__":
    main()
