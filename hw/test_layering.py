"""The folders import one way: golden <- hw <- traces <- (tb, evaluation, fpga). A module may
import from its own folder and from folders before it in that order, never from a folder
after it nor from a sibling of the top layer (README, "Layout")."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: What each folder may import from (besides itself).
ALLOWED = {
    "golden": set(),
    "hw": {"golden"},
    "traces": {"golden", "hw"},
    "tb": {"golden", "hw", "traces"},
    "evaluation": {"golden", "hw", "traces"},
    "fpga": {"golden", "hw", "traces"},
}


def imported_folders(path):
    """Project folders that the module at ``path`` imports (absolute imports only; relative
    imports stay inside the folder)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(ALLOWED)


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_imports_run_one_way(folder):
    bad = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for used in sorted(imported_folders(path) - ALLOWED[folder] - {folder}):
            bad.append(f"{path.relative_to(REPO)} imports {used}")
    assert not bad, "\n".join(bad)


def test_relative_imports_stay_in_their_package():
    bad = []
    for folder in ALLOWED:
        for path in sorted((REPO / folder).rglob("*.py")):
            depth = len(path.relative_to(REPO / folder).parts) - 1
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level > depth + 1:
                    bad.append(f"{path.relative_to(REPO)}: from {'.' * node.level}"
                               f"{node.module or ''} leaves {folder}/")
    assert not bad, "\n".join(bad)
