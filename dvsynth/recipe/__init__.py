"""Recipes: a release as one file (`dvsynth run RECIPE`), and the file a run came from
(`dvsynth recipe from-run RUN`)."""

from dvsynth.recipe.io import RECIPE_FILE, dump_recipe, load_recipe, parse_recipe
from dvsynth.recipe.model import Recipe

__all__ = ["RECIPE_FILE", "Recipe", "dump_recipe", "load_recipe", "parse_recipe"]
