# SPDX-License-Identifier: Apache-2.0
"""Assemble the hvguard Ansible collection from this repository's layout (stdlib only).

    python3 tools/build_collection.py [DEST]          # default build/collection
    ansible-galaxy collection build DEST --output-path dist    # what `make collection` runs

The repository keeps the layout its playbooks run from (ansible.cfg points at roles/,
library/, module_utils/, *_plugins/); a collection wants plugins/<type>/. This copies

    galaxy.yml, meta/runtime.yml, README.md, LICENSE, changelogs/ -> DEST/
    roles/*                                                -> DEST/roles/
    library/*.py                                           -> DEST/plugins/modules/
    module_utils/*.py                                      -> DEST/plugins/module_utils/
    action_plugins/, callback_plugins/, filter_plugins/    -> DEST/plugins/{action,callback,filter}/
    hvguard_reporting/ (the report engine), controls/catalogue.yml -> DEST/  (the engine finds
        the catalogue at ../controls/ from itself; the callback and the filters find the engine
        two directories up from plugins/<type>/)
    playbooks/*.yml, playbooks/tasks/                      -> DEST/playbooks/ (hvguard.kvm.site)

and rewrites the few names that resolve differently inside a collection:

- modules import their module_utils as ``ansible_collections.<ns>.<name>.plugins.module_utils.X``
  (``ansible.module_utils.X`` only works for a configured module_utils path);
- filter calls of hvguard's own filters get their FQCN in roles and playbooks: Ansible
  resolves unqualified *module and role* names inside a collection role against the role's
  collection, but unqualified *filter/test/lookup* names only against ansible.builtin and the
  configured filter_plugins path (tests/unit/test_collection.py shows both);
- in the shipped playbooks the roles and the hvguard filters get their FQCN, and the gate of
  audit.yml reads the report directory from $HVGUARD_REPORT_DIR (default ./reports): the
  config lookup cannot read a collection callback's options in ansible-core 2.19.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = {
    "action_plugins": "action",
    "callback_plugins": "callback",
    "filter_plugins": "filter",
}
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def galaxy_fqcn(root: Path = ROOT) -> tuple[str, str]:
    """(namespace, name) from galaxy.yml, without a YAML parser (two top-level scalars)."""
    text = (root / "galaxy.yml").read_text(encoding="utf-8")
    found = dict(re.findall(r"^(namespace|name):\s*['\"]?([a-z0-9_]+)['\"]?\s*$", text, re.M))
    return found["namespace"], found["name"]


def filter_names(root: Path = ROOT) -> list[str]:
    """Names every filter plugin file's ``FilterModule.filters()`` returns (a dict literal)."""
    names: list[str] = []
    for path in sorted((root / "filter_plugins").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "filters":
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Dict):
                        names += [k.value for k in ret.value.keys if isinstance(k, ast.Constant)]
    return sorted(set(names))


def qualify_filters(text: str, names: Iterable[str], prefix: str) -> str:
    """``| name`` -> ``| prefix.name`` for each of ``names`` (filter position only)."""
    alternatives = "|".join(sorted(map(re.escape, names), key=len, reverse=True))
    if not alternatives:
        return text
    return re.sub(rf"(\|\s*)({alternatives})\b", rf"\1{prefix}.\2", text)


def qualify_module_utils(text: str, prefix: str, local: Iterable[str]) -> str:
    """``from ansible.module_utils.<ours> import`` -> the collection's module_utils."""
    for name in local:
        text = re.sub(
            rf"\bfrom ansible\.module_utils\.{re.escape(name)} import",
            f"from ansible_collections.{prefix}.plugins.module_utils.{name} import",
            text,
        )
    return text


def qualify_playbook(text: str, roles: Iterable[str], prefix: str) -> str:
    """Role names and the report callback's name, in a shipped playbook."""
    for role in roles:
        text = re.sub(
            rf"(\brole: |\bname: |^\s*- )({re.escape(role)})[ \t]*$",
            rf"\1{prefix}.\2",
            text,
            flags=re.M,
        )
        text = re.sub(rf"([\[,]\s*)({re.escape(role)})(?=\s*[,\]])", rf"\1{prefix}.\2", text)
    # ansible-core 2.19's config lookup keys a collection callback's options by its Python
    # module name and cannot load it by that name (tests/host/test_collection.py): the gate
    # of the shipped audit playbook reads the report directory from the environment instead.
    config = (
        "lookup('ansible.builtin.config', 'report_dir', plugin_type='callback', "
        "plugin_name='hvguard_report')"
    )
    env = "lookup('ansible.builtin.env', 'HVGUARD_REPORT_DIR', default='reports')"
    return text.replace(config, env)


def rewrite_tree(top: Path, suffixes: tuple[str, ...], edit: object) -> None:
    for path in sorted(top.rglob("*")):
        if path.is_file() and path.suffix in suffixes:
            old = path.read_text(encoding="utf-8")
            new = edit(old)  # type: ignore[operator]
            if new != old:
                path.write_text(new, encoding="utf-8")


def assemble(dest: Path, root: Path = ROOT) -> Path:
    """Build the collection tree in ``dest`` (emptied first); returns ``dest``."""
    namespace, name = galaxy_fqcn(root)
    prefix = f"{namespace}.{name}"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for top in ("galaxy.yml", "README.md", "LICENSE"):
        shutil.copy2(root / top, dest / top)
    (dest / "meta").mkdir()
    shutil.copy2(root / "meta" / "runtime.yml", dest / "meta" / "runtime.yml")
    shutil.copytree(root / "roles", dest / "roles", ignore=IGNORE)
    shutil.copytree(root / "hvguard_reporting", dest / "hvguard_reporting", ignore=IGNORE)
    shutil.copytree(root / "changelogs", dest / "changelogs", ignore=IGNORE)
    (dest / "controls").mkdir()
    shutil.copy2(root / "controls" / "catalogue.yml", dest / "controls" / "catalogue.yml")

    plugins = dest / "plugins"
    local_utils = sorted(p.stem for p in (root / "module_utils").glob("*.py"))
    (plugins / "module_utils").mkdir(parents=True)
    for path in (root / "module_utils").glob("*.py"):
        # module_utils import each other too (hvguard_facts_host -> hvguard_facts_base)
        text = qualify_module_utils(path.read_text(encoding="utf-8"), prefix, local_utils)
        (plugins / "module_utils" / path.name).write_text(text, encoding="utf-8")
        shutil.copystat(path, plugins / "module_utils" / path.name)
    (plugins / "modules").mkdir()
    for path in sorted((root / "library").glob("*.py")):
        text = qualify_module_utils(path.read_text(encoding="utf-8"), prefix, local_utils)
        (plugins / "modules" / path.name).write_text(text, encoding="utf-8")
    for src, kind in PLUGIN_DIRS.items():
        (plugins / kind).mkdir()
        # NAME.yml beside a plugin file documents a filter (ansible-doc -t filter NAME).
        for path in sorted([*(root / src).glob("*.py"), *(root / src).glob("*.yml")]):
            shutil.copy2(path, plugins / kind / path.name)

    filters = filter_names(root)
    roles = sorted(p.name for p in (root / "roles").iterdir() if (p / "tasks").is_dir())
    rewrite_tree(
        dest / "roles", (".yml", ".yaml", ".j2"), lambda t: qualify_filters(t, filters, prefix)
    )

    books = dest / "playbooks"
    books.mkdir()
    for path in sorted((root / "playbooks").glob("*.yml")):
        text = qualify_playbook(path.read_text(encoding="utf-8"), roles, prefix)
        (books / path.name).write_text(qualify_filters(text, filters, prefix), encoding="utf-8")
    if (root / "playbooks" / "tasks").is_dir():
        shutil.copytree(root / "playbooks" / "tasks", books / "tasks", ignore=IGNORE)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", nargs="?", type=Path, default=ROOT / "build" / "collection")
    args = parser.parse_args(argv)
    out = assemble(args.dest.resolve())
    namespace, name = galaxy_fqcn()
    print(f"{namespace}.{name} assembled in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
