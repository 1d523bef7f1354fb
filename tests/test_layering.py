"""Package layering: a module uses another module's public names only (its own private names are its own)."""

from __future__ import annotations

import ast
import os

import tensorboard_plugin_attention as pkg

ROOT = os.path.dirname(pkg.__file__)
PACKAGE = pkg.__name__


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
    return PACKAGE + ("" if rel == "__init__" else "." + rel.removesuffix(".__init__"))


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _violations() -> list[str]:
    found = []
    for dirpath, _, files in os.walk(ROOT):
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            path = os.path.join(dirpath, f)
            current = _module_name(path)
            tree = ast.parse(open(path, encoding="utf-8").read(), path)
            aliases: dict[str, str] = {}  # local name -> one of our modules
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    source = _resolve(current, f == "__init__.py", node)
                    if not source.startswith(PACKAGE):
                        continue
                    for a in node.names:
                        if _private(a.name) and source != current:
                            found.append(f"{current}:{node.lineno} imports {source}.{a.name}")
                        aliases[a.asname or a.name] = f"{source}.{a.name}"
                elif isinstance(node, ast.Import):
                    for a in node.names:
                        if a.name.startswith(PACKAGE):
                            aliases[a.asname or a.name] = a.name
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _private(node.attr):
                    target = aliases.get(node.value.id)
                    if target and target != current:
                        found.append(f"{current}:{node.lineno} uses {target}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    assert _violations() == []


def test_the_check_sees_private_uses(tmp_path, monkeypatch):
    """The checker itself: a private import and a private attribute of another module are both found."""
    pkg_dir = tmp_path / "fakepkg"
    pkg_dir.mkdir()
    (pkg_dir / "__init__.py").write_text("")
    (pkg_dir / "a.py").write_text("_x = 1\ny = _x\n")
    (pkg_dir / "b.py").write_text("from .a import _x\nfrom . import a\nz = a._x\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", str(pkg_dir))
    monkeypatch.setattr(__import__(__name__), "PACKAGE", "fakepkg")
    assert _violations() == ["fakepkg.b:1 imports fakepkg.a._x", "fakepkg.b:3 uses fakepkg.a._x"]
