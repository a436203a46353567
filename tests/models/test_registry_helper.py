"""`fwi.registry.Registry`: register / get / build, the one error message, keyword pass-through, name order."""

from __future__ import annotations

import pytest

from fwi.registry import Registry


def _table() -> Registry:
    reg = Registry("widget")

    @reg.register("square")
    class Square:
        def __init__(self, side: int, scale: float = 1.0, *, label: str = "") -> None:
            self.area = side * side * scale
            self.label = label

    reg.register("anything", lambda *args, **kwargs: (args, kwargs))
    return reg


def test_register_get_build():
    reg = _table()
    cls = reg.get("square")
    assert cls.__name__ == "Square"  # the decorator returns the class unchanged
    made = reg.build("square", 3, scale=2.0, label="x")
    assert isinstance(made, cls) and made.area == 18.0 and made.label == "x"
    assert reg.build("anything", 1, b=2) == ((1,), {"b": 2})  # **kwargs constructors take any keyword
    assert "square" in reg and "circle" not in reg and len(reg) == 2 and list(reg) == ["square", "anything"]


def test_unknown_name_one_message():
    reg = _table()
    for bad in ("circle", None, ["square"]):
        with pytest.raises(ValueError) as err:
            reg.get(bad)
        assert str(err.value) == f"unknown widget {bad!r}; valid: square, anything"


def test_registering_twice_is_an_error():
    reg = _table()
    with pytest.raises(KeyError, match="widget 'square' registered twice"):
        reg.register("square", object)


def test_unexpected_keyword_named_with_the_options():
    reg = _table()
    with pytest.raises(ValueError) as err:
        reg.build("square", 3, scael=2.0)
    assert str(err.value) == "widget 'square' takes no option 'scael' (its options: scale, label)"
    assert reg.options("square") == ["scale", "label"]
    assert reg.options("anything") is None
    reg.register("bare", lambda side: side)
    with pytest.raises(ValueError, match=r"takes no option 'x' \(it takes no options\)"):
        reg.build("bare", 1, x=2)
    assert reg.build("bare", side=4) == 4  # a required parameter may still be passed by keyword


def test_sorted_names_with_pinned_first():
    reg = Registry("thing", sort=True, first=("none", "absent"))
    for name in ("zeta", "alpha", "none", "mid"):
        reg.register(name, object)
    assert reg.names() == ["none", "alpha", "mid", "zeta"]
    assert Registry("thing").names() == []
