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


def test_eval_runner_and_backends_do_not_import_each_other():
    """The runner drives the backends; the backends need only the generation settings (``eval/generation.py``)."""
    import ast
    from pathlib import Path

    import videoktr.eval as package

    root = Path(package.__file__).parent
    tree = ast.parse((root / "backends.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert "videoktr.eval.generation" in imported and "videoktr.eval.runner" not in imported


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
