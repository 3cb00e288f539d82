"""Opt-in stand-in for Mooncake's Python package, backed by mcefa.

Only on sys.path when you put it there (see mcefa.shim_path()). It refuses
to load where the real Mooncake is installed, so it never hides it.
"""
import importlib.machinery as _machinery
import os as _os
import sys as _sys

_here = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
_others = [p for p in _sys.path if _os.path.abspath(p or ".") != _here]
if _machinery.PathFinder.find_spec("mooncake", _others) is not None:
    raise ImportError("the real Mooncake is installed; remove mcefa's shim (%s) from PYTHONPATH to use it, "
                      "or uninstall Mooncake to use mcefa" % _here)
