"""The built-in model names, outside the models package so that importing them loads neither
torch nor the models: what parsing a study config or rendering a cluster job needs (a test
keeps this list equal to the registry)."""

from __future__ import annotations

BUILTIN_MODELS = ("beira", "linker", "neurobolt", "ridge", "twin")
