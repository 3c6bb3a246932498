"""Reading a student's notebook against the instructor's layout: solutions, tampering and suspicious code.

Only the solution slots are taken from the student. Everything else the grader runs comes from the instructor;
what the student changed there is reported (``tampered`` rows) so an instructor sees attempts and accidents alike.
"""

from __future__ import annotations

import ast
import difflib
import textwrap
from dataclasses import dataclass, field

from nbformat import NotebookNode

from .layout import Exercise, Layout, student_notebook
from .surgery import extract_solutions

#: Module and helper names a solution has no business replacing, besides what the set-up cells bind.
WATCHED_NAMES = frozenset({"torch", "np", "numpy", "F", "nn", "math", "random", "sys", "os", "builtins",
                           "__builtins__", "pd", "pandas", "course_utils", "warnings", "importlib", "IPython"})
IPYTHON_INTERNALS = frozenset({"get_ipython", "_ih", "_oh", "In", "Out", "_ii", "_iii", "_i", "__builtins__",
                               "__builtin__", "_exit_code"})
GENERATED_CODE = frozenset({"exec", "eval", "compile", "__import__"})
SUSPICIOUS_MODULES = frozenset({"builtins", "ctypes", "gc", "inspect", "importlib", "IPython"})
_MUTATORS = frozenset({"update", "pop", "popitem", "setdefault", "clear", "__setitem__", "__delitem__"})
_HOOKS = {("sys", "settrace"), ("sys", "setprofile"), ("sys", "_getframe"), ("os", "putenv"), ("os", "unsetenv")}


@dataclass
class Submission:
    """What grading takes from one student notebook."""

    solutions: dict[int, list[str | None]]  # exercise ordinal -> one entry per slot (None: the stub)
    tampered: list[tuple[str, str]] = field(default_factory=list)  # (exercise number or "", message)
    flags: dict[int, list[str]] = field(default_factory=dict)  # exercise ordinal -> suspicious constructs


def _normal(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip("\n").split("\n")).strip()


def _first_line(source: str) -> str:
    line = next((x.strip() for x in source.split("\n") if x.strip()), "")
    return line if len(line) <= 60 else line[:57] + "..."


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node


def bound_names(sources: list[str]) -> set[str]:
    """Names the given cells bind at module level (imports, assignments, defs): the notebook's shared names."""
    names: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _used_names(source: str) -> set[str]:
    """Names a cell reads (for a check cell: the references it compares against, among others)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def suspicious(solution: str, watched: set[str], in_function: bool = False) -> list[str]:
    """Constructs in a solution that could fool a check rather than pass it: assigning to modules' or shared
    names' attributes, to builtins, ``sys.modules``, ``os.environ``, or using IPython internals. Heuristic: the
    grader still grades the solution and only flags it for a human to look at. In a function body (``in_function``)
    a plain assignment binds a local, so only names declared ``global`` count as rebound."""
    try:
        tree = ast.parse(textwrap.dedent(solution))
    except SyntaxError:
        return []
    found: list[str] = []
    declared_global = {n for node in ast.walk(tree) if isinstance(node, ast.Global) for n in node.names}
    if in_function:  # a name the block binds itself (an assignment, a loop variable) is a local, not the shared one
        local = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        watched = watched - (local - declared_global)
    watched = watched | WATCHED_NAMES
    top_level = set() if in_function else set(map(id, tree.body))

    def note(node: ast.AST, what: str) -> None:
        found.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        for target in targets:
            for part in ast.walk(target):
                root = _root(part)
                if isinstance(part, (ast.Attribute, ast.Subscript)) and isinstance(root, ast.Name) \
                        and root.id in watched:
                    note(node, f"assigns to {ast.unparse(part)}")
                    break
                if isinstance(part, ast.Name) and part.id in watched and isinstance(part.ctx, (ast.Store, ast.Del)) \
                        and (id(node) in top_level or part.id in declared_global):
                    note(node, f"rebinds the shared name {part.id!r}")
                elif isinstance(part, ast.Subscript) and isinstance(root, ast.Call) \
                        and getattr(root.func, "id", "") in ("globals", "locals", "vars"):
                    note(node, f"assigns to {ast.unparse(part)}")
        if isinstance(node, ast.Call):
            func = node.func
            name = getattr(func, "id", "")
            if name in ("setattr", "delattr") and node.args and isinstance(_root(node.args[0]), ast.Name) \
                    and _root(node.args[0]).id in watched:  # type: ignore[attr-defined]
                note(node, f"calls {name} on {ast.unparse(node.args[0])}")
            elif name in GENERATED_CODE:
                note(node, f"runs generated code with {name}()")
            elif isinstance(func, ast.Attribute):
                owner = ast.unparse(func.value)
                if owner in ("os.environ", "sys.modules", "builtins.__dict__") and func.attr in _MUTATORS:
                    note(node, f"changes {owner} ({func.attr})")
                elif (owner, func.attr) in _HOOKS:
                    note(node, f"calls {owner}.{func.attr}")
        elif isinstance(node, ast.Name) and node.id in IPYTHON_INTERNALS:
            note(node, f"uses IPython internals ({node.id})")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for module in modules:
                if module.split(".")[0] in SUSPICIOUS_MODULES:
                    note(node, f"imports {module}")
    return list(dict.fromkeys(found))


def _match_exercise(e: Exercise, free: list[NotebookNode]) -> NotebookNode | None:
    """The student's cell for exercise ``e`` when its id is gone: the first free code cell (in notebook order,
    after the previous exercise's) holding most of the exercise cell's fixed lines, whatever fills the slots."""
    fixed = [line.strip() for part in e.template.fixed for line in part if line.strip()]
    if not fixed:
        return None
    for cell in free:
        lines = [line.strip() for line in cell.source.split("\n") if line.strip()]
        matcher = difflib.SequenceMatcher(None, fixed, lines, autojunk=False)
        if sum(block.size for block in matcher.get_matching_blocks()) >= 0.6 * len(fixed):
            return cell
    return None


def read_submission(layout: Layout, nb: NotebookNode) -> Submission:
    """Solutions (matched by cell id, else by exercise order), tampering and flags of a student's notebook."""
    released = student_notebook(layout)
    released_code = {c.id: c for c in released.cells if c.cell_type == "code"}
    released_sources = {_normal(c.source) for c in released_code.values()}
    code = [c for c in nb.cells if c.cell_type == "code"]
    by_id = {c.id: c for c in code}
    used: set[str] = {c.id for c in code if c.id in released_code}
    out = Submission({})
    watched = bound_names([layout.cell(i).source for i in layout.setup_ids])
    after = -1  # position of the previous exercise's cell among the student's code cells
    for e in layout.exercises:
        label = f"exercise {e.number}"
        cell = by_id.get(e.cell_id)
        if cell is None:
            cell = _match_exercise(e, [c for c in code[after + 1:] if c.id not in used])
            if cell is not None:
                used.add(cell.id)
        if cell is not None:
            after = next(i for i, c in enumerate(code) if c is cell)
        if cell is None:
            out.solutions[e.ordinal] = [None] * e.template.slots
            out.tampered.append((e.number, f"the cell of {label} is missing (deleted, or its cell id changed): "
                                           "graded as not attempted"))
        else:
            extraction = extract_solutions(e.template, cell.source)
            out.solutions[e.ordinal] = extraction.solutions
            if extraction.outside:
                out.tampered.append((e.number, f"the cell of {label} was edited outside the solution block "
                                               f"({'; '.join(extraction.outside[:3])}): those edits were dropped"))
            # what the check reads, except the names the exercise itself is meant to bind (its function, or a
            # design cell's configuration, which the instructor's solution assigns)
            names = watched | (_used_names(e.check_source)
                               - bound_names([e.template.released(), e.template.render(list(e.solutions))]))
            flags = [f for s, local in zip(extraction.solutions, e.template.in_function()) if s
                     for f in suspicious(s, names, local)]
            if flags:
                out.flags[e.ordinal] = flags
        _compare(out, by_id, code, used, e.check_id, e.public_check, e.number, f"the check cell of {label}")
    for setup_id in layout.setup_ids:
        _compare(out, by_id, code, used, setup_id, released_code[setup_id].source, "", f"set-up cell {setup_id}")
    for cell in code:
        if cell.id not in used and cell.source.strip() and _normal(cell.source) not in released_sources:
            out.tampered.append(("", f"code cell {cell.id} ({_first_line(cell.source)!r}) was added by the student: "
                                     "not run by the grader"))
    return out


def _compare(out: Submission, by_id: dict[str, NotebookNode], code: list[NotebookNode], used: set[str],
             cell_id: str, expected: str, number: str, what: str) -> None:
    """Record a tampered row when the instructor-owned cell ``cell_id`` was edited or deleted."""
    cell = by_id.get(cell_id)
    if cell is None:
        twin = next((c for c in code if c.id not in used and _normal(c.source) == _normal(expected)), None)
        if twin is not None:
            used.add(twin.id)
            return
        out.tampered.append((number, f"{what} is missing (deleted, or its cell id changed): the instructor's "
                                     "version was run"))
    elif _normal(cell.source) != _normal(expected):
        out.tampered.append((number, f"{what} was edited: the instructor's version was run instead"))
