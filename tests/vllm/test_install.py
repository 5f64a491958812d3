"""use_vllm is refused at config time, with the pip command, when vLLM is missing, another release, or does not
import; and the TRL vLLM settings the video requests cannot serve are refused with the fix."""

from __future__ import annotations

import importlib.metadata
import sys

import pytest

from videoktr.errors import UserError
from videoktr.training.recipe import make_config
from videoktr.vllm import install

PIP = r"pip install 'videoktr\[vllm\]'  \(vllm==0.33.0, which installs torch==2.14.0"


def config(tmp_path, **fields):
    return make_config({"output_dir": str(tmp_path), "use_cpu": True, **fields})


@pytest.fixture
def vllm_version(monkeypatch):
    """vllm_version(v): importlib.metadata reports vLLM ``v`` installed (None: not installed)."""
    real = importlib.metadata.version

    def set_version(version):
        def fake(name):
            if name != "vllm":
                return real(name)
            if version is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return version

        monkeypatch.setattr(install.importlib.metadata, "version", fake)

    return set_version


def test_missing_vllm_is_refused_with_the_pip_command(tmp_path, vllm_version):
    vllm_version(None)
    with pytest.raises(
        UserError, match=rf"use_vllm=True is refused: vLLM is not installed.*{PIP}.*use_vllm: false"
    ):
        config(tmp_path, use_vllm=True, ktr_full_logps="forward")


def test_another_release_is_refused(tmp_path, vllm_version):
    vllm_version("0.34.1")
    with pytest.raises(UserError, match=rf"vLLM 0.34.1 is installed, but .* vLLM 0.33.0.*{PIP}"):
        config(tmp_path, use_vllm=True, ktr_full_logps="forward")


def test_a_release_that_does_not_import_is_refused(tmp_path, vllm_version, monkeypatch):
    vllm_version("0.33.0")
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(
        UserError, match=rf"vLLM 0.33.0 is installed but does not import \(ModuleNotFoundError.*{PIP}"
    ):
        config(tmp_path, use_vllm=True, ktr_full_logps="forward")


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            {"vllm_mode": "server"},
            r"vllm_mode='server' is refused: TRL 1.16's server client .*vllm_mode: colocate",
        ),
        ({"vllm_tensor_parallel_size": 2}, r"vllm_tensor_parallel_size=2 is refused.*: 1"),
        ({"ktr_full_logps": "generation"}, r"ktr_full_logps='generation'.*set ktr_full_logps: forward"),
    ],
)
def test_settings_the_video_requests_cannot_serve_are_refused(
    tmp_path, vllm_version, monkeypatch, fields, message
):
    vllm_version("0.33.0")
    monkeypatch.setitem(sys.modules, "vllm", sys.modules[__name__])  # an importable stand-in
    settings = {"use_vllm": True, "ktr_full_logps": "forward", "vllm_mode": "colocate", **fields}
    with pytest.raises(UserError, match=message):
        config(tmp_path, **settings)
    settings.update({"vllm_mode": "colocate", "vllm_tensor_parallel_size": 1, "ktr_full_logps": "forward"})
    assert config(tmp_path, **settings).use_vllm  # the fixed settings pass


def test_without_vllm_here_the_real_check_says_not_installed():
    """This machine has no vLLM (its wheel needs torch 2.14.0): the unpatched check reports it."""
    problem = install.vllm_problem()
    assert problem is not None and "pip install 'videoktr[vllm]'" in problem
