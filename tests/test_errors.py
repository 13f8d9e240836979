"""One error catalogue: every error nbflow raises on purpose is in nbflow.errors."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import nbflow
import nbflow.errors
from nbflow.errors import NbflowError, WholeNumberError
from nbflow.executors import LocalDaskExecutor

BUILTINS = (ValueError, TypeError, RuntimeError, OSError, NameError, SyntaxError)


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= _all_subclasses(sub)
    return found


def _nbflow_errors() -> set[type]:
    for info in pkgutil.walk_packages(nbflow.__path__, "nbflow."):
        if info.name != "nbflow.__main__":
            importlib.import_module(info.name)
    return {c for c in _all_subclasses(NbflowError) if c.__module__.startswith("nbflow")}


def test_every_nbflow_error_is_public_in_nbflow_errors():
    errors = _nbflow_errors()
    assert len(errors) > 20
    for cls in errors:
        assert not cls.__name__.startswith("_"), cls
        assert cls.__module__ == "nbflow.errors", f"{cls} is defined outside the catalogue"
        assert getattr(nbflow.errors, cls.__name__) is cls
        assert cls.__name__ in nbflow.errors.__all__
        assert issubclass(cls, BUILTINS), f"{cls} derives from no built-in error"
    assert nbflow.errors.__all__ == sorted(nbflow.errors.__all__)


def test_a_user_facing_error_names_no_private_class():
    with pytest.raises(WholeNumberError, match=r"num_workers must be a whole number >= 1"):
        LocalDaskExecutor(num_workers=0)
