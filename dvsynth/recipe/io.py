"""Reading and writing recipe files: YAML in, one line per mistake, YAML out.

A recipe is published beside the data it made, so it must never hold a secret: keys are
named by their environment variable (`api_key_env: OPENAI_API_KEY`). A value, or a
comment, that looks like a key or a token is refused with the line that names where it
is, never the value itself. The sha256 of a recipe is the sha256 of its file's bytes:
the bytes pushed to the Hub, so anyone can check the file they downloaded.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dvsynth.errors import UserError
from dvsynth.recipe.model import Recipe
from dvsynth.secrets import looks_secret

RECIPE_FILE = "recipe.yaml"

#: An environment variable's name: what every `*_env` key must hold.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Keys that would hold a secret's value; a recipe names a variable instead.
_SECRET_KEY = re.compile(r"(^|_)(api_key|key|token|secret|password)$", re.IGNORECASE)


def _yaml():
    import yaml

    return yaml


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_recipe(path: Path) -> tuple[Recipe, bytes]:
    """The recipe in `path` and the file's bytes; every mistake one `UserError` line
    naming the file and the key (and the line, where YAML knows it)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such recipe file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_recipe(data, str(path)), data


def parse_recipe(data: bytes, name: str = RECIPE_FILE) -> Recipe:
    yaml = _yaml()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{name}: not UTF-8 text") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{name}{where}: not valid YAML ({problem})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{name}: a recipe is a mapping of sections (generate, validation, ...)")
    _refuse_duplicate_keys(node, name)  # YAML keeps the last silently
    check_secrets(raw, name, node)  # the dotted key of a secret value
    _refuse_secret_text(text, name)  # and one in a comment: the file is published whole
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        line = _line_of(node, first["loc"])
        where = f"{name}:{line}" if line else name
        if first["type"] == "extra_forbidden":
            message = f"{where}: unknown key '{key}'{_known(first['loc'])}"
        else:
            message = f"{where}: {key}: {first['msg']}"
        more = len(exc.errors()) - 1
        raise UserError(message + (f" (and {more} more)" if more else "")) from None
    if recipe.push is not None and recipe.export is None:
        line = _line_of(node, ("push",))
        raise UserError(
            f"{name}:{line}: push: needs an export section (at least its license): what "
            "push uploads is the export"
        )
    return recipe


def _refuse_duplicate_keys(node: Any, name: str, loc: tuple = ()) -> None:
    """A key given twice in one mapping, with its line: YAML would keep the last one
    and drop the first without a word."""
    yaml = _yaml()
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            here = (*loc, str(getattr(key, "value", key)))
            if here[-1] in seen:
                raise UserError(
                    f"{name}:{key.start_mark.line + 1}: duplicate key '{'.'.join(here)}'; "
                    "each key may appear once in a mapping"
                )
            seen.add(here[-1])
            _refuse_duplicate_keys(value, name, here)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(item, name, (*loc, str(index)))


def _known(loc: tuple) -> str:
    """The keys allowed where an unknown one was found, for the error line."""
    model: Any = Recipe
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if field is None:
            return ""
        model = next(
            (
                a
                for a in getattr(field.annotation, "__args__", (field.annotation,))
                if isinstance(a, type) and hasattr(a, "model_fields")
            ),
            None,
        )
        if model is None:
            return ""
    return f" (known: {', '.join(model.model_fields)})"


def _line_of(node: Any, loc: tuple) -> int | None:
    """1-based line of the key at `loc` in the composed YAML, or None."""
    line = None
    for part in loc:
        if node is None or not hasattr(node, "value") or not isinstance(node.value, list):
            return line
        found = None
        for item in node.value:
            if isinstance(item, tuple):
                key, value = item
                if str(getattr(key, "value", "")) == str(part):
                    line, found = key.start_mark.line + 1, value
                    break
            elif isinstance(part, int) and node.value.index(item) == part:
                line, found = item.start_mark.line + 1, item
                break
        node = found
    return line


def _refuse_secret_text(text: str, name: str) -> None:
    """A key-shaped string anywhere in the file, comments included: the file is
    published as it is."""
    for number, line in enumerate(text.splitlines(), start=1):
        if looks_secret(line):
            key = line.split("#", 1)[0].split(":", 1)[0].strip() or "a comment"
            raise UserError(
                f"{name}:{number}: {key}: looks like a secret value; a recipe names the "
                "environment variable that holds a key (e.g. api_key_env: OPENAI_API_KEY), "
                "never the key itself"
            )


def check_secrets(raw: Any, name: str, node: Any = None, loc: tuple = ()) -> None:
    """Refuse a recipe (as a dict) that holds a secret: a key-shaped string, a `*_env`
    key that is not a variable name, or a key meant for a secret's value."""
    if isinstance(raw, dict):
        for key, value in raw.items():
            here = (*loc, key)
            dotted = ".".join(map(str, here))
            line = _line_of(node, here) if node is not None else None
            where = f"{name}:{line}" if line else name
            if _SECRET_KEY.search(str(key)) and value not in (None, ""):
                raise UserError(
                    f"{where}: {dotted}: a recipe never holds a secret; name the environment "
                    f"variable instead ({key}_env: VARIABLE)"
                )
            if str(key).endswith("_env") and value is not None:
                if not isinstance(value, str) or not _ENV_NAME.match(value):
                    raise UserError(
                        f"{where}: {dotted}: must be the NAME of an environment variable "
                        "(e.g. OPENAI_API_KEY), not its value"
                    )
            check_secrets(value, name, node, here)
    elif isinstance(raw, list):
        for index, value in enumerate(raw):
            check_secrets(value, name, node, (*loc, index))
    elif isinstance(raw, bytes):  # `!!binary`: no setting is binary, and it hides text
        dotted = ".".join(map(str, loc))
        line = _line_of(node, loc) if node is not None else None
        where = f"{name}:{line}" if line else name
        raise UserError(f"{where}: {dotted}: a !!binary value is not a setting; write it as text")
    elif isinstance(raw, str) and looks_secret(raw):
        dotted = ".".join(map(str, loc))
        line = _line_of(node, loc) if node is not None else None
        where = f"{name}:{line}" if line else name
        raise UserError(
            f"{where}: {dotted}: looks like a secret value; name the environment variable "
            "that holds it instead"
        )


def dump_recipe(recipe: Recipe, header: str = "") -> bytes:
    """The recipe as YAML, sections in order, every setting spelled out (defaults too),
    so the file says exactly what ran; `header` becomes leading comment lines."""
    yaml = _yaml()
    data = recipe.model_dump(mode="json")
    for section in ("export", "push"):  # absent, not null: the stages this recipe runs
        if data.get(section) is None:
            data.pop(section, None)
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    text = lines + body
    check_secrets(yaml.safe_load(body), RECIPE_FILE)
    _refuse_secret_text(text, RECIPE_FILE)
    return text.encode("utf-8")
