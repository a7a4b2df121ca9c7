"""The package's architecture, measured: one-way imports between its rooms, few floors, short functions.

A room is a top-level module or a sub-package of ``src/dotrestore``; an arrow is any import of
one room by another (lazy imports inside functions included). The floor of a room is the
length of the longest chain of arrows below it, so the number of floors is the depth of the
import graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dotrestore"
MAX_FLOORS = 8
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 420


def rooms() -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        out.setdefault(rel.parts[0] if len(rel.parts) > 1 else rel.stem, []).append(path)
    return out


def _imported(path: Path) -> set[str]:
    """Absolute names of the dotrestore modules (and attributes) a file imports."""
    module = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = module[:-1] if module[-1] != "__init__" else module[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            target = ".".join(base + tuple((node.module or "").split("."))).strip(".")
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("dotrestore.")}


def import_graph() -> dict[str, set[str]]:
    table = rooms()
    graph = {room: set() for room in table}
    for room, files in table.items():
        for path in files:
            for name in _imported(path):
                target = name.split(".")[1]
                if target in table and target != room:
                    graph[room].add(target)
    return graph


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """Floor of each room (1 = imports no other room); raises on a cycle."""
    level: dict[str, int] = {}

    def visit(room: str, path: tuple[str, ...]) -> int:
        if room in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(room):] + (room,)))
        if room not in level:
            level[room] = 1 + max((visit(t, path + (room,)) for t in graph[room]), default=0)
        return level[room]

    for room in graph:
        visit(room, ())
    return level


def test_imports_point_one_way_on_at_most_eight_floors():
    level = floors(import_graph())  # raises on a cycle
    assert max(level.values()) <= MAX_FLOORS, sorted(level.items(), key=lambda kv: -kv[1])


def test_layers_keep_their_promises():
    graph = import_graph()
    assert graph["ot"] == set(), "ot/ is pure mathematics: it imports nothing of dotrestore"
    assert not graph["settings"] - {"errors", "ot"}
    users_of_distributed = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                            if _uses_distributed(p) and p.name != "parallel.py"]
    assert users_of_distributed == [], "only runtime/parallel.py talks to torch.distributed"


def _uses_distributed(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.startswith("torch.distributed") for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch.distributed"):
            return True
        if isinstance(node, ast.Attribute) and node.attr == "distributed":
            return True
    return False


def test_floor_count_sees_a_cycle():
    try:
        floors({"a": {"b"}, "b": {"a"}})
    except AssertionError as exc:
        assert "a -> b -> a" in str(exc)
    else:
        raise AssertionError("a cycle must be reported")


def test_functions_and_files_stay_short():
    long_functions, long_files = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            long_files.append(str(path.relative_to(PACKAGE)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(PACKAGE)}:{node.name} ({lines} lines)")
    assert long_functions == [] and long_files == []


def test_the_product_never_says_how_it_was_made():
    words = ("seed paper", "seed's", "issue ", "hook (", "--- mixture", "the session")
    found = [f"{p.relative_to(PACKAGE.parents[1])}: {w!r}" for p in [*PACKAGE.rglob("*.py"), *PACKAGE.parents[1].glob("*.md"),
                                                                     *(PACKAGE.parents[1] / "docs").glob("*.md")]
             for w in words if w in p.read_text().lower()]
    assert found == []


def test_rooms_are_named_by_what_they_hold():
    """Image files in io/, restorers in restorers/, what only the experiment uses (its synthetic
    degradations) in experiment/: no catch-all room that re-exports another room's names."""
    table, graph = rooms(), import_graph()
    assert "data" not in table
    assert {room for room, targets in graph.items() if "experiment" in targets} <= {"cli"}, "experiment-only code"
    assert not graph["restorers"] & {"experiment", "tasks", "serve", "cli"}, "restorers sit below their users"
    assert (PACKAGE / "experiment" / "degradations.py").is_file() and (PACKAGE / "restorers" / "named.py").is_file()


#: Where the settings table is used: the entry points (command line, config files, operator
#: files, the explorer, the Python constructors) and the table itself. Below them values are typed.
SETTINGS_USERS = {"settings", "cli", "serve", "experiment", "estimator", "params", "operator_file", "state", "runtime",
                  "tasks"}


def test_settings_are_read_at_the_entry_points_only():
    graph = import_graph()
    below = sorted(room for room, targets in graph.items() if "settings" in targets and room not in SETTINGS_USERS)
    assert below == [], "io/, codecs/, ot/ (and every room below the entry points) take typed values"
    for room in ("io", "codecs", "ot"):
        assert "settings" not in graph[room] and "settings" not in _below(graph, room), room


def test_typed_defaults_below_the_entry_points_agree_with_the_table():
    from dotrestore import settings
    from dotrestore.codecs import options
    from dotrestore.io import images

    assert settings.default("max_pixels") == images.DEFAULT_MAX_PIXELS
    assert options.DTYPES == settings.DTYPES and settings.default("tile") in ("auto", "off")


def _below(graph: dict[str, set[str]], room: str) -> set[str]:
    seen, todo = set(), list(graph[room])
    while todo:
        r = todo.pop()
        if r not in seen:
            seen.add(r)
            todo.extend(graph.get(r, ()))
    return seen


def _private_names(tree: ast.AST) -> set[str]:
    """The ``_name`` s a module defines: functions, classes, assigned names and attributes, arguments."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def private_reaches() -> list[str]:
    """``x._name`` read in one module (x not self/cls) where only another module defines ``_name``,
    and ``from .m import _name`` across modules."""
    trees = {p: ast.parse(p.read_text()) for p in PACKAGE.rglob("*.py")}
    defined = {p: _private_names(t) for p, t in trees.items()}
    ours = set().union(*defined.values())
    found = []
    for path, tree in trees.items():
        where = path.relative_to(PACKAGE)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr in ours and node.attr not in defined[path]
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.ImportFrom) and node.module != "_version":
                found.extend(f"{where}:{node.lineno}: imports {a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__") and node.level)
    return found


def test_no_private_attribute_is_read_across_modules():
    assert private_reaches() == []


def _fits(path: Path) -> list[str]:
    """Calls of ``x.partial_fit(...)`` and ``x.fit(...)`` in a file, except ``fit`` of the tasks.fit module."""
    tree = ast.parse(path.read_text())
    job = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
           and (node.module or "").endswith("tasks") for alias in node.names if alias.name == "fit"}
    return [ast.unparse(node.func) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and (node.func.attr == "partial_fit" or (node.func.attr == "fit" and not (
                isinstance(node.func.value, ast.Name) and node.func.value.id in job)))]


def test_fit_apply_and_video_are_each_written_once():
    """Fitting, applying to files and applying to a clip live in tasks/; the command line, the
    explorer and the experiment call them instead of writing the job again."""
    jobs = {"fit": PACKAGE / "tasks" / "fit.py", "apply": PACKAGE / "tasks" / "apply.py",
            "video": PACKAGE / "tasks" / "apply_video.py"}
    assert all(p.is_file() for p in jobs.values())
    engine = {PACKAGE / "estimator.py", jobs["fit"]}
    fitting = sorted(f"{p.relative_to(PACKAGE)}: {call}" for p in PACKAGE.rglob("*.py")
                     if p not in engine and "ot" not in p.relative_to(PACKAGE).parts for call in _fits(p))
    assert fitting == [], "fitting is written once, in tasks/fit.py"
    writers = {"write_outputs", "plan_outputs", "write_video", "plan_video"}
    defined = sorted(f"{p.relative_to(PACKAGE)}:{node.name}" for p in PACKAGE.rglob("*.py")
                     for node in ast.walk(ast.parse(p.read_text()))
                     if isinstance(node, ast.FunctionDef) and node.name in writers)
    assert defined == ["tasks/apply.py:plan_outputs", "tasks/apply.py:write_outputs",
                       "tasks/apply_video.py:plan_video", "tasks/apply_video.py:write_video"]
    graph = import_graph()
    assert {"cli", "serve", "experiment"} <= {room for room, targets in graph.items() if "tasks" in targets}
