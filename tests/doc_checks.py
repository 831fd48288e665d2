"""Reads the documentation and checks what it says a user can type (tests/test_docs.py).

Every ``check_*`` function returns a list of problems (strings naming the page, the command
and what is wrong); an empty list means the page holds. The checks stay in-process:

* a command of this project (``python train.py``, ``coseg-segment``, ``python -m
  coseg_jax.apps.X``) must have an entry point; its absl flags are built with
  ``coseg_jax.apps.cli.command_flags`` and the documented arguments parsed with them, so an
  unknown flag, a bad enum value or a ``--config.KEY`` missing from the config file the
  command names fails;
* a benchmark (``python -m bench.X``, from the repository root) is run up to its
  ``argparse`` parser, which then parses the documented arguments; ``python bench/X.py``
  is refused (the scripts import ``bench.common``, which needs the root on the path);
* ``make T`` needs target T in the Makefile; ``pip install`` extras must exist in
  pyproject.toml, and a pinned jax range must be pyproject's;
* a Python name in backticks (``coseg_jax.maps.binarize``, ``maps.binarize``) must import;
* a relative link must name an existing file (and an existing heading, with ``#anchor``).
"""

import argparse
import ast
import contextlib
import functools
import importlib
import importlib.util
import inspect
import io
import pathlib
import re
import shlex
import sys
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"),
                REPO / "coseg_jax" / "proj" / "real_photos" / "README.md"])
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SHELL_LANGUAGES = ("", "bash", "sh", "shell", "console")
# programs that are not this project's: their presence is all that can be said
OTHER_PROGRAMS = {".", "source", "cd", "sha256sum", "lscpu", "ls", "mkdir", "cp", "unzip",
                  "tar", "wget", "curl", "git", "export"}
COMMAND_START = re.compile(r"^(?:[A-Z_]+=(?:\"[^\"]*\"|'[^']*'|\S*)\s+)*(?:nice\s+(?:-n\s*\d+\s+)?)?"
                           r"(?:python3?|\.venv/bin/python|coseg-\w+|make|pip|bash\s+\S+\.sh)(?:\s|$)")
FILE_SUFFIXES = {"py", "md", "json", "jsonl", "txt", "png", "jpg", "npz", "pth", "pkl", "cff"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)


def missing_extra(error):
  """The optional package (an extra: torch, tensorflow_datasets, ...) whose absence
  ``error`` reports, or None when it is this project's own module or no import error."""
  if isinstance(error, ModuleNotFoundError) and error.name:
    top = error.name.split(".")[0]
    if top not in ("coseg_jax", "bench"):
      return top
  return None


def rel(page):
  return str(pathlib.Path(page).relative_to(REPO)) if pathlib.Path(page).is_absolute() else page


# --------------------------------------------------------------------------- extraction


def fenced_blocks(text, languages):
  """(language, body) of every fenced block whose language is one of ``languages``."""
  return [(m.group(1), m.group(2)) for m in FENCE.finditer(text) if m.group(1) in languages]


def commands(text):
  """Every shell command of a page as (command, whole): the lines of its shell (and plain)
  fenced blocks that start with a command (backslash continuations joined; whole=True), and
  every inline code span that reads as one (whole=False: prose names a program or a flag
  without the rest of the command). A line ``a && b`` gives two. Of docs/training.md's
  "Names that changed" only the names now are read."""
  text = _names_section_now_only(text)
  found = []
  for _, body in fenced_blocks(text, SHELL_LANGUAGES):
    for line in body.replace("\\\n", " ").splitlines():
      line = line.strip()
      if COMMAND_START.match(line):
        found.append((line, True))
  prose = FENCE.sub("", text)
  for span in re.findall(r"`([^`]+)`", prose):
    span = " ".join(span.split())
    if COMMAND_START.match(span):
      found.append((span, False))
  split = []
  for command, whole in found:
    split += [(c.strip(), whole) for c in re.split(r"\s(?:&&|;)\s", command) if c.strip()]
  return split


def words(command):
  """The command's words, comments dropped, environment assignments and ``nice`` skipped,
  and the ``...`` of an elided example left out."""
  lexer = shlex.shlex(command, posix=True, punctuation_chars=False)
  lexer.whitespace_split = True
  tokens = [t for t in lexer if t != "..."]
  while tokens and re.match(r"^[A-Z_]+=", tokens[0]):
    tokens = tokens[1:]
  if tokens[:1] == ["nice"]:
    tokens = tokens[1:]
    if tokens[:1] == ["-n"]:
      tokens = tokens[2:]
    elif tokens and re.match(r"-n?\d+$", tokens[0]):
      tokens = tokens[1:]
  return tokens


def program(tokens):
  """What runs: ("module", "coseg_jax.apps.train_main", args), ("bench", "bench_loader",
  args), ("make", None, args), ("pip", None, args), ("other", name, args) or
  ("unknown", name, args)."""
  head, args = tokens[0], tokens[1:]
  scripts = PYPROJECT["project"]["scripts"]
  if head in scripts:
    return "module", scripts[head].split(":")[0], args
  if head in ("python", "python3", ".venv/bin/python"):
    if args[:1] == ["-m"] and len(args) > 1:
      module, args = args[1], args[2:]
      if module == "pip":
        return "pip", None, args
      if module in ("pytest", "venv"):
        return "other", module, args
      if module.startswith("bench."):
        return "bench", module.split(".", 1)[1], args
      return "module", module, args
    if args and args[0].endswith(".py"):
      script, args = args[0], args[1:]
      if script in ("train.py", "eval.py"):
        return "module", {"train.py": "coseg_jax.apps.train_main",
                          "eval.py": "coseg_jax.apps.eval_main"}[script], args
      if script.startswith("bench/"):
        return "bench path", script.removeprefix("bench/").removesuffix(".py"), args
      return "unknown", script, args
    return "unknown", " ".join(tokens[:2]), args
  if head in ("make", "pip"):
    return head, None, args
  if head == "bash" and args and args[0].endswith(".sh"):
    return "script", args[0], args[1:]
  if head in OTHER_PROGRAMS:
    return "other", head, args
  return "unknown", head, args


# --------------------------------------------------------------------------- commands


def entry_point(module):
  """The function a command module runs as ``__main__`` (``main`` or ``run``), or None."""
  for name in ("main", "run"):
    fn = getattr(module, name, None)
    if callable(fn) and getattr(fn, "__module__", None) == module.__name__:
      return fn
  return None


def _flag_name(token):
  return token[2:].split("=", 1)[0]


def check_absl(name, args, whole=True):
  """``python -m name args`` of a command built on ``coseg_jax.apps.cli``; ``whole``: the
  arguments are a whole command line, parsed as the command would."""
  from coseg_jax.apps import cli  # pylint: disable=g-import-not-at-top
  try:
    module = importlib.import_module(name)
  except ImportError as e:
    if missing_extra(e):
      return []  # needs an extra that is not installed: checked where it is
    return [f"module {name} does not import: {e}"]
  if not hasattr(module, "define") or entry_point(module) is None:
    return [f"{name} is not a command (no define() and main()/run(): `python -m {name}` "
            "does nothing)"]
  try:
    fv = cli.command_flags(module.define)
  except Exception as e:  # pylint: disable=broad-except
    return [f"{name}: its flags cannot be defined: {type(e).__name__}: {e}"]
  problems = []
  config_file = any(_flag_name(a) == "config" for a in args if a.startswith("--"))
  for arg in args:
    if not arg.startswith("--"):
      continue
    flag = _flag_name(arg)
    if flag.startswith("config."):
      if "config" not in fv:
        problems.append(f"--{flag}: {name} takes no --config")
      elif not config_file:
        problems.append(f"--{flag} without --config: the overrides apply to a config file "
                        "(--config FILE); a run's own config.json takes none")
      continue
    known = flag in fv or (flag.startswith("no") and flag[2:] in fv and
                           fv[flag[2:]].boolean)
    if not known:
      problems.append(f"unknown flag --{flag} of {name}")
  if problems or not whole or not args:
    return problems
  with contextlib.chdir(REPO):
    try:
      cli.parse(fv, [name, *args])
      if config_file:
        fv.config  # pylint: disable=pointless-statement  # loads the file, applies overrides
    except Exception as e:  # pylint: disable=broad-except
      return [f"{name} refuses the arguments: {cli.message(e)}"]
  return []


class _Parser(Exception):
  def __init__(self, parser):
    super().__init__("parser")
    self.parser = parser


def bench_parser(name):
  """The argparse parser that ``bench/<name>.py`` builds (its ``main`` is stopped there)."""
  if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
  module = importlib.import_module(f"bench.{name}")
  main = entry_point(module)
  if main is None:
    raise ValueError(f"bench/{name}.py has no main()")

  def stop(parser, *_, **__):
    raise _Parser(parser)

  patches = {"parse_args": stop, "parse_known_args": stop, "parse_intermixed_args": stop}
  saved = {k: getattr(argparse.ArgumentParser, k) for k in patches}
  saved_argv = sys.argv
  try:
    for k, fn in patches.items():
      setattr(argparse.ArgumentParser, k, fn)
    sys.argv = [f"bench/{name}.py"]
    main(*([[]] if inspect.signature(main).parameters else []))
  except _Parser as e:
    return e.parser
  finally:
    for k, fn in saved.items():
      setattr(argparse.ArgumentParser, k, fn)
    sys.argv = saved_argv
  raise ValueError(f"bench/{name}.py's main() parsed no arguments")


def check_bench(name, args, whole=True):
  if not (REPO / "bench" / f"{name}.py").is_file():
    return [f"bench/{name}.py does not exist"]
  try:
    parser = bench_parser(name)
  except Exception as e:  # pylint: disable=broad-except
    if missing_extra(e):
      return []  # needs an extra that is not installed: checked where it is
    return [f"bench/{name}.py: {type(e).__name__}: {e}"]
  options = {o for action in parser._actions for o in action.option_strings}  # pylint: disable=protected-access
  unknown = [a.split("=")[0] for a in args if a.startswith("--") and a.split("=")[0] not in options]
  if unknown:
    return [f"unknown flag {u} of bench/{name}.py" for u in unknown]
  if not whole:
    return []
  stderr = io.StringIO()
  try:
    with contextlib.redirect_stderr(stderr):
      parser.parse_args(args)
  except SystemExit:
    return [f"bench/{name}.py refuses the arguments: {stderr.getvalue().strip().splitlines()[-1]}"]
  return []


def make_targets():
  text = (REPO / "Makefile").read_text()
  return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, flags=re.M))


def check_make(args):
  targets = make_targets()
  return [f"make target {a} does not exist in the Makefile" for a in args
          if not a.startswith("-") and "=" not in a and a not in targets]


def check_pip(args):
  problems = []
  extras = set(PYPROJECT["project"]["optional-dependencies"])
  jax_range = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("jax>"))
  for i, arg in enumerate(args):
    m = re.match(r"^(?:\.|coseg_jax)\[([\w,-]+)\]$", arg)
    if m:
      problems += [f"pip extra [{e}] is not in pyproject.toml" for e in m.group(1).split(",")
                   if e not in extras]
    m = re.match(r"^jax(?:\[[\w,-]+\])?([<>=!].*)$", arg)
    if m and m.group(1).replace(" ", "") != jax_range.removeprefix("jax"):
      problems.append(f"{arg}: pyproject.toml requires {jax_range}")
    if arg in ("-c", "-r") and i + 1 < len(args) and not (REPO / args[i + 1]).is_file():
      problems.append(f"{arg} {args[i + 1]}: no such file")
  return problems


def check_command(command, whole=True):
  """The problems of one documented command (a string as a user would type it); ``whole``:
  a whole command line (else prose naming a program and some of its flags)."""
  tokens = words(command)
  if not tokens:
    return []
  kind, name, args = program(tokens)
  if kind == "module":
    return check_absl(name, args, whole)
  if kind == "bench":
    return check_bench(name, args, whole)
  if kind == "bench path":
    return [f"bench/{name}.py: run it as `python -m bench.{name}` from the repository root"]
  if kind == "make":
    return check_make(args)
  if kind == "pip":
    return check_pip(args)
  if kind == "script":
    return [] if (REPO / name).is_file() else [f"{name} does not exist"]
  if kind == "other":
    return []
  return [f"unknown program {name}"]


def check_commands(text, page="page"):
  problems = []
  for command, whole in commands(text):
    problems += [f"{rel(page)}: `{command}`: {p}" for p in check_command(command, whole)]
  return problems


# --------------------------------------------------------------------------- names and links


def _names_section_now_only(text):
  """docs/training.md's "Names that changed" lists old names on purpose: of its tables only
  the last column (the names now) is checked."""
  def now(match):
    lines = []
    for line in match.group(0).splitlines():
      cells = line.split("|")
      lines.append(cells[-2] if line.startswith("|") and len(cells) > 2 else line)
    return "\n".join(lines)
  return re.sub(r"^## Names that changed\n.*?(?=^## |\Z)", now, text, flags=re.S | re.M)


def _module_basenames():
  """{basename: [dotted module]} of every module and package of coseg_jax."""
  names = {}
  for path in (REPO / "coseg_jax").rglob("*.py"):
    parts = path.relative_to(REPO).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    names.setdefault(parts[-1], []).append(".".join(parts))
  return names


def _has_key(config, dotted):
  for part in dotted.split("."):
    if not hasattr(config, "keys") or part not in config:
      return False
    config = config[part]
  return True


@functools.cache
def _configs():
  """The default config, and the same with the real-photo recipe's keys at their defaults."""
  from coseg_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from coseg_jax.proj.real_photos import recipe  # pylint: disable=g-import-not-at-top
  return config_lib.default_config(), recipe.add_config(config_lib.default_config())


def is_config_key(dotted):
  """``voc.split_seed`` in a table of config.data's keys is a key, not Python."""
  return any(_has_key(c, dotted) or _has_key(c.data, dotted) for c in _configs())


def resolve(dotted):
  """Imports the longest module prefix of ``dotted`` and gets the rest as attributes."""
  parts = dotted.split(".")
  for cut in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:cut]))
    except ImportError as e:
      if missing_extra(e):
        return True  # needs an extra that is not installed: checked where it is
      continue
    try:
      for attr in parts[cut:]:
        obj = getattr(obj, attr)
    except AttributeError:
      return False
    return True
  return False


def python_names(text):
  """The names in backticks that read as this project's Python: ``coseg_jax.x.y`` and
  ``module.attr`` where module is one of coseg_jax's modules (by its last name) or a
  name of the package (``CoSegNet.encode``)."""
  import coseg_jax  # pylint: disable=g-import-not-at-top
  basenames = _module_basenames()
  found = []
  for span in re.findall(r"`([^`\n]+)`", FENCE.sub("", _names_section_now_only(text))):
    span = re.sub(r"\(.*\)$", "", span.strip())  # `evaluate_groups(groups, ...)`
    if (not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", span) or
        span.rsplit(".", 1)[1] in FILE_SUFFIXES):
      continue
    head = span.split(".")[0]
    if head == "coseg_jax":
      found.append((span, [span]))
    elif head in ("config", "data", "model", "train", "eval", "init") or is_config_key(span):
      continue  # config keys, not Python
    elif head in basenames:
      found.append((span, [m + span[len(head):] for m in basenames[head]]))
    elif hasattr(coseg_jax, head):
      found.append((span, ["coseg_jax." + span]))
  return found


def check_names(text, page="page"):
  return [f"{rel(page)}: `{span}` does not resolve (tried {', '.join(candidates)})"
          for span, candidates in python_names(text)
          if not any(resolve(c) for c in candidates)]


def check_paths(text, page="page"):
  """A source path in backticks (``coseg_jax/maps.py``, ``configs/demo.py``) must exist."""
  problems = []
  for span in re.findall(r"`([^`\n]+)`", FENCE.sub("", _names_section_now_only(text))):
    m = re.fullmatch(r"((?:coseg_jax|configs|bench|tests)/[\w/.-]*\.py)(?::.*)?", span.strip())
    if m and not (REPO / m.group(1)).exists():
      problems.append(f"{rel(page)}: `{m.group(1)}` does not exist")
  return problems


def slug(heading):
  """GitHub's anchor of a heading."""
  heading = re.sub(r"[`*_]", "", heading.strip().lower())
  return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(text):
  return {slug(h) for h in re.findall(r"^#+\s+(.*)$", FENCE.sub("", text), flags=re.M)}


def check_links(text, page):
  """Every relative markdown link names an existing file, and its #anchor a heading."""
  page = pathlib.Path(page)
  problems = []
  for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", text)):
    if re.match(r"^[a-z]+:", target):
      continue  # https:, mailto:
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    if not file.exists():
      problems.append(f"{rel(page)}: link ({target}): {path} does not exist")
    elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
      problems.append(f"{rel(page)}: link ({target}): no heading #{anchor} in {file.name}")
  return problems


def check_config_table(text, page="docs/data.md"):
  """docs/data.md's table of ``config.data.*`` keys: every key exists in ``config.py``'s
  default config (or the recipe's) with the default the table gives."""
  problems = []
  section = re.search(r"^## Config keys \(`config\.data\.\*`\)\n(.*?)(?=^## )", text,
                      flags=re.S | re.M)
  if not section:
    return [f"{rel(page)}: no section 'Config keys (`config.data.*`)'"]
  rows = re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", section.group(1), flags=re.M)
  default, recipe = _configs()
  for key, shown in rows:
    config = default.data if _has_key(default.data, key) else recipe.data
    if not _has_key(config, key):
      problems.append(f"{rel(page)}: config.data.{key} is not a key of config.py")
      continue
    value = config
    for part in key.split("."):
      value = value[part]
    try:
      parsed = ast.literal_eval(shown)
    except (ValueError, SyntaxError):
      parsed = shown
    if parsed != value:
      problems.append(f"{rel(page)}: config.data.{key} defaults to {value!r}, not {shown}")
  return problems
