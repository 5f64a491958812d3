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
