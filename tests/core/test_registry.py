import pytest

from videoktr.core.registry import Registry, UnknownNameError


def _registry() -> Registry:
    reg = Registry("colour")

    @reg.register("red")
    def red():
        return "r"

    reg.add("blue", "b")
    return reg


def test_register_get_names_contains():
    reg = _registry()
    assert reg.get("red")() == "r"
    assert reg.get("blue") == "b"
    assert reg.names() == ["blue", "red"]
    assert "red" in reg and "green" not in reg
    assert list(reg) == ["blue", "red"] and len(reg) == 2


def test_decorator_returns_the_object_unchanged():
    reg = Registry("thing")

    def f():
        return 1

    assert reg.register("f")(f) is f


def test_unknown_name_lists_valid_names_and_is_a_key_error():
    reg = _registry()
    with pytest.raises(UnknownNameError) as info:
        reg.get("green")
    assert isinstance(info.value, KeyError)
    # str() is the plain message (KeyError would wrap it in quotes).
    assert str(info.value) == "unknown colour 'green'; valid: blue, red"
    assert info.value.valid == ["blue", "red"]


def test_registering_a_name_twice_is_an_error():
    reg = _registry()
    with pytest.raises(ValueError, match="already registered"):
        reg.add("red", "again")
    assert reg.get("red")() == "r"
