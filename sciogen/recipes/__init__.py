"""The shipped training recipes: YAML files inside the package, usable by name after install.

A recipe is ``sciogen/recipes/<domain>/<name>.yaml`` and is named ``"<domain>/<name>"``
(``sciogen train molecules/qm9``). Each domain has a default recipe (its
:class:`~sciogen.registry.DomainSpec` ``recipe``), so ``sciogen train molecules --data my.smi``
needs no YAML at all. Packaged recipes never point into a repository: their data come from
the dataset registry (``null`` paths) or from ``--data``.

A YAML file may start from a recipe and change a few keys (a *thin reference*)::

    recipe: molecules/qm9
    data:
      path: /data/qm9          # where your copy of the data lies

Its keys are merged over the recipe's, section by section.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from sciogen.config import ConfigError, load_yaml

__all__ = ["recipe_names", "recipe_text", "load_recipe", "resolve_recipe", "merge", "read_config_source"]


def _folder():
    return importlib.resources.files("sciogen") / "recipes"


def recipe_names() -> list[str]:
    """The packaged recipes, e.g. ``["crystals/perov5", ..., "toy/gmm"]``."""
    names = []
    for domain in _folder().iterdir():
        if domain.is_dir() and not domain.name.startswith("_"):
            names += [f"{domain.name}/{f.name[:-5]}" for f in domain.iterdir() if f.name.endswith(".yaml")]
    return sorted(names)


def recipe_text(name: str) -> str:
    """The YAML text of the packaged recipe ``name`` (``"domain/name"``)."""
    if name not in recipe_names():
        raise ConfigError(f"no packaged recipe named {name!r}; recipes: {', '.join(recipe_names())}")
    domain, _, stem = name.partition("/")
    return (_folder() / domain / f"{stem}.yaml").read_text()


def load_recipe(name: str) -> dict[str, Any]:
    """The packaged recipe ``name`` as a plain mapping (its own ``recipe:`` base resolved)."""
    try:
        data = yaml.safe_load(recipe_text(name)) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"packaged recipe {name} is not valid YAML: {err}") from None
    return resolve_recipe(data, f"recipe {name}")


def resolve_recipe(data: Mapping[str, Any], where: str = "config", _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Merge ``data`` over the recipe named by its ``recipe:`` key (if any)."""
    data = dict(data)
    base_name = data.pop("recipe", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise ConfigError(f"{where}: 'recipe' must be a recipe name such as 'molecules/qm9', got {base_name!r}")
    if base_name in _seen:
        raise ConfigError(f"{where}: recipe {base_name!r} refers to itself ({' -> '.join(_seen + (base_name,))})")
    base = yaml.safe_load(recipe_text(base_name)) or {}
    base = resolve_recipe(base, f"recipe {base_name}", _seen + (base_name,))
    return merge(base, data)


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: sections (mappings) merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_config_source(source: str | Path, default_for_domain: Mapping[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """The raw mapping of a YAML file, a packaged recipe name or a domain name.

    Returns (mapping, stem): ``stem`` names the default run folder (``runs/<stem>``).
    ``default_for_domain`` maps a domain name to its default recipe.
    """
    path = Path(source)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return resolve_recipe(load_yaml(path), str(path)), path.stem
    name = str(source)
    if name in recipe_names():
        return load_recipe(name), name.replace("/", "-")
    defaults = default_for_domain or {}
    if name in defaults:
        return load_recipe(defaults[name]), name
    raise ConfigError(
        f"{name!r} is neither a YAML file, a packaged recipe nor a domain; domains: "
        f"{', '.join(sorted(defaults))}; recipes: {', '.join(recipe_names())}"
    )
