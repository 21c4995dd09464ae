# SPDX-License-Identifier: Apache-2.0
"""A control's whole story: the tasks that implement it and the tests that prove it.

Read statically (YAML with line numbers, Python by AST), so docs generation and the catalogue
tests need neither Ansible nor a pytest run:

* **Implemented by**: every task of `roles/*/tasks|handlers/*.yml` whose tags carry the ID
  (a task's own ID tags win; without them it inherits those of its block, its
  `import_tasks`, or the `apply:` of its `include_tasks`), with the files it installs.
* **Proven by**: pytest tests carrying `@pytest.mark.control("HVG-...", effect=...)`
  (decorator or module `pytestmark`; a test whose docstring or name starts with the ID is
  listed too, as a check that is not an effect proof), Molecule verify tasks whose name
  starts with the ID, scripts with a `# HVG-...:` header line, and the catalogue's
  `proofs:` entries that name a Molecule scenario's verify task, script or test.

An *effect proof* exercises what the control is for (the attack fails, the protected state
is observed on a running system), not its configuration. Tests claim it with
`effect=True`; Molecule verify tasks and scripts named by the ID are effect proofs (verify
runs on a converged VM; configuration checks belong in the audit); a catalogue `proofs:`
entry says `effect:` explicitly.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "controls" / "catalogue.yml"
ID_RE = re.compile(r"HVG-[A-Z]+-\d+")
# An ID in free text: not part of a longer word, not a template such as f"HVG-MIG-00{i}".
ID_IN_TEXT = re.compile(r"(?<![\w-])HVG-[A-Z]+-\d+(?![\w{])")
# Areas the catalogue never uses: made-up IDs for fixtures and examples, under tests/ only.
RESERVED_AREAS = ("TST", "XMP")
BLOCK_KEYS = ("block", "rescue", "always")
INSTALL_MODULES = ("copy", "template")
TASK_KEYWORDS = {
    "name", "tags", "when", "register", "loop", "loop_control", "with_items", "notify",
    "changed_when", "failed_when", "check_mode", "diff", "vars", "become", "become_user",
    "delegate_to", "run_once", "ignore_errors", "no_log", "listen", "environment", "args",
    "until", "retries", "delay", "throttle", "any_errors_fatal", "module_defaults",
    "ignore_unreachable", "timeout", "connection", "local_action", "with_dict",
    "delegate_facts", "collections", "debugger",
}  # fmt: skip


def load_catalogue() -> dict[str, Any]:
    return yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))


def controls_by_id(catalogue: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in (catalogue or load_catalogue())["controls"]}


def rel(path: Path) -> str:
    """A path relative to the tree (as given when outside it, e.g. a test's scratch role)."""
    path = path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.as_posix()


# --------------------------------------------------------------------------- YAML with lines
def _compose(path: Path) -> yaml.Node | None:
    return yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)


def _mapping(node: yaml.Node) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}


def _value(node: yaml.Node | None) -> Any:
    return None if node is None else yaml.constructor.SafeConstructor().construct_document(node)


def _str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",")]
    return [str(v) for v in value]


def _ids(tags: list[str]) -> tuple[str, ...]:
    return tuple(t for t in tags if ID_RE.fullmatch(t))


# --------------------------------------------------------------------------- implemented by
@dataclass(frozen=True)
class Task:
    file: str
    line: int
    name: str
    module: str
    ids: tuple[str, ...]
    conditions: tuple[str, ...] = ()
    installs: tuple[tuple[str, str | None], ...] = ()  # (dest, role file it comes from)
    handler: bool = False
    # Every control ID Ansible puts on the task: its own tags plus those of enclosing blocks,
    # imports and include `apply:` (Ansible merges them; `ids` keeps the nearest only).
    effective_ids: tuple[str, ...] = ()


def _module(keys: dict[str, yaml.Node]) -> str:
    for key in keys:
        if key not in TASK_KEYWORDS and not key.startswith("with_"):
            return key
    return ""


def _installs(module: str, args: Any, role_dir: Path) -> tuple[tuple[str, str | None], ...]:
    if module.rsplit(".", 1)[-1] not in INSTALL_MODULES or not isinstance(args, dict):
        return ()
    dest = str(args.get("dest", args.get("path", "")))
    src = args.get("src")
    source = None
    if isinstance(src, str) and "{{" not in src and not args.get("remote_src"):
        sub = "templates" if module.endswith("template") else "files"
        if (role_dir / sub / src).is_file():
            source = rel(role_dir / sub / src)
    return ((dest, source),) if dest else ()


def _include_target(keys: dict[str, yaml.Node]) -> tuple[str, str | None, list[str]] | None:
    """(kind, static file name or None, apply tags) of an include/import_tasks task."""
    for key, node in keys.items():
        kind = key.rsplit(".", 1)[-1]
        if kind not in ("include_tasks", "import_tasks"):
            continue
        value = _value(node)
        name = value.get("file") if isinstance(value, dict) else value
        apply = (value.get("apply") or {}) if isinstance(value, dict) else {}
        static = name if isinstance(name, str) and "{{" not in name else None
        return kind, static, _str_list(apply.get("tags"))
    return None


def _conditions(keys: dict[str, yaml.Node]) -> tuple[str, ...]:
    when = _value(keys.get("when"))
    items = [when] if isinstance(when, str) else list(when or [])
    return tuple(" ".join(str(w).split()) for w in items if str(w).strip())


@dataclass(frozen=True)
class _Context:
    ids: tuple[str, ...]  # control IDs passed on by a block, import or include `apply:`
    when: tuple[str, ...]  # conditions of the enclosing blocks and includes
    role_dir: Path
    handler: bool
    inherited: tuple[str, ...] = ()  # IDs Ansible merges into every task below


def _walk(path: Path, ctx: _Context, seen: set[Path]) -> Iterator[Task]:
    seen.add(path)
    root = _compose(path)
    if isinstance(root, yaml.SequenceNode):
        yield from _walk_items(path, root, ctx, seen)


def _walk_items(
    path: Path, seq: yaml.SequenceNode, ctx: _Context, seen: set[Path]
) -> Iterator[Task]:
    for item in seq.value:
        keys = _mapping(item)
        if not keys:
            continue
        own = _ids(_str_list(_value(keys.get("tags"))))
        ids = own or ctx.ids
        merged = tuple(dict.fromkeys(ctx.inherited + own))
        when = ctx.when + _conditions(keys)
        if any(k in keys for k in BLOCK_KEYS):
            inner = replace(ctx, ids=ids, when=when, inherited=merged)
            for key in BLOCK_KEYS:
                if isinstance(keys.get(key), yaml.SequenceNode):
                    yield from _walk_items(path, keys[key], inner, seen)
            continue
        include = _include_target(keys)
        if include:
            kind, name, apply = include
            target = (path.parent / name).resolve() if name else None
            if target and target.is_file() and target not in seen:
                # import_tasks passes its tags on; include_tasks only those of `apply:`
                passed = ids if kind == "import_tasks" else (_ids(apply) or ctx.ids)
                inherit = merged if kind == "import_tasks" else ctx.inherited + _ids(apply)
                inner = replace(ctx, ids=passed, when=when, inherited=tuple(dict.fromkeys(inherit)))
                yield from _walk(target, inner, seen)
            continue
        module = _module(keys)
        yield Task(
            file=rel(path),
            line=item.start_mark.line + 1,
            name=str(_value(keys.get("name")) or ""),
            module=module,
            ids=ids,
            conditions=tuple(dict.fromkeys(when)),
            installs=_installs(module, _value(keys.get(module)), ctx.role_dir),
            handler=ctx.handler,
            effective_ids=merged,
        )


def role_tasks(role_dir: Path) -> list[Task]:
    """Every task of a role: tasks/main.yml and what it includes, then the other task files
    (entry points for tasks_from) and the handlers."""
    seen: set[Path] = set()
    tasks_dir = role_dir / "tasks"
    out: list[Task] = []
    main = (tasks_dir / "main.yml").resolve()
    top = _Context((), (), role_dir, False)
    if main.is_file():
        out += _walk(main, top, seen)
    for path in sorted(tasks_dir.glob("*.yml")):
        if path.resolve() not in seen:
            out += _walk(path.resolve(), top, seen)
    for path in sorted((role_dir / "handlers").glob("*.yml")):
        out += _walk(path.resolve(), replace(top, handler=True), seen)
    return out


def implementing_tasks(control_id: str) -> list[Task]:
    tasks = []
    for role_dir in sorted((ROOT / "roles").iterdir()):
        if (role_dir / "tasks").is_dir():
            tasks += [t for t in role_tasks(role_dir) if control_id in t.ids]
    return sorted(tasks, key=lambda t: (t.file, t.line))


# --------------------------------------------------------------------------- proven by
@dataclass(frozen=True)
class Proof:
    control: str
    kind: str  # pytest | verify-task | script
    file: str
    line: int
    name: str
    attack: str
    effect: bool


@dataclass(frozen=True)
class Marker:
    ids: tuple[str, ...]
    effect: bool
    file: str
    line: int
    problems: tuple[str, ...] = field(default=())


def _is_control_marker(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "control"
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == "mark"
    )


def _marker(node: ast.Call, file: str) -> Marker:
    problems = []
    ids = []
    for arg in node.args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            ids.append(arg.value)
        else:
            problems.append("control IDs must be string literals")
    effect = False
    for kw in node.keywords:
        if kw.arg == "effect" and isinstance(kw.value, ast.Constant):
            effect = kw.value.value is True
        else:
            problems.append(f"unknown or non-literal keyword {kw.arg!r}")
    if not ids:
        problems.append("no control ID")
    return Marker(tuple(ids), effect, file, node.lineno, tuple(problems))


def _markers_in(expr: ast.AST | None, file: str) -> list[Marker]:
    if expr is None:
        return []
    items = expr.elts if isinstance(expr, ast.List | ast.Tuple) else [expr]
    return [_marker(i, file) for i in items if _is_control_marker(i)]


def _first_line(doc: str | None) -> str:
    """A docstring's first paragraph on one line."""
    if not doc or not doc.strip():
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _attack(name: str, doc: str | None) -> str:
    text = _first_line(doc)
    text = re.sub(r"^(HVG-[A-Z]+-\d+[,/ ]*)+[:|-]?\s*", "", text)
    return text or name.removeprefix("test_").replace("_", " ")


def _test_functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef]]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef) and sub.name.startswith("test_"):
                    yield f"{node.name}::{sub.name}", sub


def test_files() -> list[Path]:
    files = set((ROOT / "tests").glob("**/test_*.py")) | set(ROOT.glob("molecule/*/tests/*.py"))
    return sorted(files)


def module_markers(path: Path) -> tuple[list[Marker], dict[str, tuple[ast.FunctionDef, list]]]:
    """(module-level pytestmark markers, {test name: (function, its own markers)})."""
    file = rel(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module: list[Marker] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            module += _markers_in(node.value, file)
    tests = {}
    for name, fn in _test_functions(tree):
        own = [m for d in fn.decorator_list for m in _markers_in(d, file)]
        tests[name] = (fn, own)
    return module, tests


def all_markers() -> list[Marker]:
    out = []
    for path in test_files():
        module, tests = module_markers(path)
        out += module
        for _fn, own in tests.values():
            out += own
    return out


def pytest_proofs() -> list[Proof]:
    out = []
    for path in test_files():
        module, tests = module_markers(path)
        for name, (fn, own) in tests.items():
            doc = ast.get_docstring(fn)
            claimed: dict[str, bool] = {}
            for marker in module + own:
                for cid in marker.ids:
                    claimed[cid] = claimed.get(cid, False) or marker.effect
            if not claimed:  # named by the ID only: listed, never an effect proof
                head = _first_line(doc)
                named = re.findall(r"hvg_([a-z]+)_(\d+)", name)
                ids = [f"HVG-{a.upper()}-{n}" for a, n in named]
                ids += re.findall(r"^(?:HVG-[A-Z]+-\d+[,/ ]*)+", head)[:1]
                for group in ids:
                    for cid in ID_RE.findall(group):
                        claimed.setdefault(cid, False)
            for cid, effect in claimed.items():
                out.append(
                    Proof(cid, "pytest", rel(path), fn.lineno, name, _attack(name, doc), effect)
                )
    return out


def _play_tasks(path: Path) -> Iterator[tuple[int, str]]:
    """(line, name) of every task of a playbook (plays' pre_tasks/tasks/post_tasks, blocks)."""
    root = _compose(path)
    if not isinstance(root, yaml.SequenceNode):
        return

    def walk(seq: yaml.Node) -> Iterator[tuple[int, str]]:
        if not isinstance(seq, yaml.SequenceNode):
            return
        for item in seq.value:
            keys = _mapping(item)
            if any(k in keys for k in BLOCK_KEYS):
                for key in BLOCK_KEYS:
                    if key in keys:
                        yield from walk(keys[key])
            elif keys:
                yield item.start_mark.line + 1, str(_value(keys.get("name")) or "")

    for play in root.value:
        keys = _mapping(play)
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            if section in keys:
                yield from walk(keys[section])


def verify_tasks(scenario: str) -> list[tuple[int, str]]:
    path = ROOT / "molecule" / scenario / "verify.yml"
    return list(_play_tasks(path)) if path.is_file() else []


def scenario_scripts() -> list[Path]:
    return sorted(ROOT.glob("molecule/*/files/*.sh"))


def _script_header_ids(path: Path) -> list[tuple[int, str, str]]:
    """(line, ID, text) of `# HVG-XXX-NNN: text` lines in a script's leading comments."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()[:30], 1):
        if not line.startswith("#"):
            break
        m = re.match(r"#\s*(HVG-[A-Z]+-\d+)\s*[:|]\s*(.*)", line)
        if m:
            out.append((number, m.group(1), m.group(2).strip()))
    return out


def molecule_proofs() -> list[Proof]:
    out = []
    for verify in sorted(ROOT.glob("molecule/*/verify.yml")):
        for line, name in _play_tasks(verify):
            m = re.match(r"(HVG-[A-Z]+-\d+)\s*\|\s*(.*)", name)
            if m:
                out.append(Proof(m.group(1), "verify-task", rel(verify), line, name, m[2], True))
    for script in scenario_scripts():
        for line, cid, text in _script_header_ids(script):
            out.append(Proof(cid, "script", rel(script), line, script.name, text, True))
    return out


def _proof_entry(cid: str, entry: dict[str, Any]) -> tuple[list[Proof], list[str]]:
    """Resolve one catalogue `proofs:` entry; (proofs, problems)."""
    scenario = entry.get("scenario")
    base = ROOT / "molecule" / str(scenario)
    problems = []
    if not isinstance(entry.get("effect"), bool):
        problems.append(f"{cid}: proofs entry {entry} needs effect: true|false")
    if scenario is None and "::" in str(entry.get("test", "")):
        return _test_entry(cid, entry, problems)
    if not base.is_dir():
        return [], [*problems, f"{cid}: proofs entry names unknown scenario {scenario!r}"]
    effect = entry.get("effect") is True
    attack = entry.get("attack")
    found: list[Proof] = []
    if "task" in entry:
        for line, name in verify_tasks(str(scenario)):
            if name.startswith(entry["task"]):
                found.append(
                    Proof(cid, "verify-task", rel(base / "verify.yml"), line, name,
                          attack or name.removeprefix("Verify | "), effect)
                )  # fmt: skip
    elif "script" in entry:
        script = base / entry["script"]
        verify = base / "verify.yml"
        used = verify.is_file() and entry["script"] in verify.read_text(encoding="utf-8")
        if script.is_file() and used:
            doc = _script_doc(script)
            found.append(Proof(cid, "script", rel(script), 1, script.name, attack or doc, effect))
    elif "test" in entry:
        for path in sorted(base.glob("tests/*.py")):
            _module, tests = module_markers(path)
            if entry["test"] in tests:
                fn = tests[entry["test"]][0]
                doc = ast.get_docstring(fn)
                found.append(
                    Proof(cid, "pytest", rel(path), fn.lineno, entry["test"],
                          attack or _attack(entry["test"], doc), effect)
                )  # fmt: skip
    else:
        problems.append(f"{cid}: proofs entry {entry} names no task, script or test")
    if not found and not problems:
        problems.append(f"{cid}: proofs entry {entry} matches nothing in molecule/{scenario}")
    return found, problems


def _test_entry(cid: str, entry: dict[str, Any], problems: list[str]) -> tuple[list, list]:
    """A `test: tests/<path>.py::<function>` entry: gives a marked test its attack text."""
    file, _, name = str(entry["test"]).partition("::")
    path = ROOT / file
    tests = module_markers(path)[1] if path.is_file() and file.startswith("tests/") else {}
    if name not in tests:
        return [], [*problems, f"{cid}: proofs entry {entry} names no such test"]
    fn = tests[name][0]
    attack = entry.get("attack") or _attack(name, ast.get_docstring(fn))
    effect = entry.get("effect") is True
    return [Proof(cid, "pytest", rel(path), fn.lineno, name, attack, effect)], problems


def _script_doc(path: Path) -> str:
    """The first sentence of a script's leading comment block."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:12]:
        if not line.startswith("#"):
            break
        words.append(line.lstrip("# ").strip())
    text = " ".join(w for w in words if w)
    return (text.split(". ")[0] + ".") if text else path.name


def catalogue_proofs(catalogue: dict[str, Any] | None = None) -> tuple[list[Proof], list[str]]:
    proofs, problems = [], []
    for control in (catalogue or load_catalogue())["controls"]:
        for entry in control.get("proofs") or []:
            found, bad = _proof_entry(control["id"], entry)
            proofs += found
            problems += bad
    return proofs, problems


def all_proofs(catalogue: dict[str, Any] | None = None) -> list[Proof]:
    # the catalogue's entries first: their attack text wins over a docstring's
    proofs = catalogue_proofs(catalogue)[0] + pytest_proofs() + molecule_proofs()
    merged: dict[tuple[str, str, int, str], Proof] = {}
    for proof in proofs:  # the same test listed twice is one proof, effect if either says so
        key = (proof.control, proof.file, proof.line, proof.name)
        if key in merged:
            proof = replace(merged[key], effect=merged[key].effect or proof.effect)
        merged[key] = proof
    return sorted(merged.values(), key=lambda p: (p.control, not p.effect, p.file, p.line))


def proofs_for(control_id: str, proofs: list[Proof] | None = None) -> list[Proof]:
    return [p for p in (proofs if proofs is not None else all_proofs()) if p.control == control_id]
