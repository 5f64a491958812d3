import subprocess
import sys


def test_core_imports_torch_only():
    code = (
        "import sys, videoktr.core\n"
        "heavy = [m for m in ('transformers', 'trl', 'av', 'accelerate', 'peft') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"videoktr.core loaded {out.stdout.strip()}"


def test_all_names_exist():
    import videoktr.core as core

    missing = [name for name in core.__all__ if not hasattr(core, name)]
    assert missing == []
    for name in ("top_fraction_mask", "key_token_mask", "policy_loss", "tw_token_weights", "Registry"):
        assert name in core.__all__


def test_no_two_eval_modules_import_each_other():
    """No import circle in ``videoktr.eval`` (module-level or lazy imports both count)."""
    import ast
    from pathlib import Path

    import videoktr.eval as package

    root = Path(package.__file__).parent
    imports = {}
    for path in root.rglob("*.py"):
        name = "videoktr.eval." + ".".join(path.relative_to(root).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        imports[name.removesuffix(".__init__")] = {
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
    assert "videoktr.eval.backends" in imports and "videoktr.eval.runner" in imports
    circles = sorted((a, b) for a in imports for b in imports[a] if a < b and a in imports.get(b, ()))
    assert circles == []


def test_no_source_file_over_500_lines():
    """House style (STYLE.md): a file over 500 lines is split along its seams."""
    from pathlib import Path

    import videoktr

    root = Path(videoktr.__file__).parent
    long = {
        str(p.relative_to(root)): n
        for p in root.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert long == {}
