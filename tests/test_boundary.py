"""The layering holds: arcnn/ never imports the packages built on it nor reads the environment
outside its commands, and the packages' commands plug in."""

import ast
from pathlib import Path

from click.testing import CliRunner

from arcnn import cli

ROOT = Path(__file__).resolve().parents[1]
ABOVE_THE_LIBRARY = {"training", "worker", "bench"}
COMMAND_LAYER = {"arcnn/commands.py", "training/commands.py", "training/studies/platforms.py", "worker/commands.py"}
"""The modules that parse the environment and pass the values in (worker/tasks.py too, for tasks
run by a Celery worker that `arcnn worker` did not start)."""

COMMANDS = {"restore", "eval", "models", "train", "enqueue", "status", "jobs", "cancel", "worker", "run"}
"""The CLI contract: users' scripts call these names."""


def imported_packages(source: Path) -> set[str]:
    """Top-level package of every import in a module, including deferred ones inside functions."""
    packages = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            packages.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            packages.add(node.module.split(".")[0])
    return packages


def test_library_imports_nothing_above_it():
    modules = sorted((ROOT / "arcnn").rglob("*.py"))
    assert modules
    offenders = {str(m.relative_to(ROOT)): sorted(imported_packages(m) & ABOVE_THE_LIBRARY) for m in modules}
    assert {m: p for m, p in offenders.items() if p} == {}


def reads_environment(source: Path) -> bool:
    """Whether a module touches ``os.environ`` or ``os.getenv``."""
    return any(isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
               for node in ast.walk(ast.parse(source.read_text(), str(source))))


def test_only_the_commands_read_the_environment():
    modules = [m for package in ("arcnn", "training", "worker") for m in sorted((ROOT / package).rglob("*.py"))]
    readers = {str(m.relative_to(ROOT)) for m in modules if reads_environment(m)}
    assert readers <= COMMAND_LAYER | {"worker/tasks.py"}
    assert "arcnn/commands.py" in readers


def test_every_command_is_registered_under_its_own_name():
    registered = cli.registered()
    assert set(registered) == COMMANDS
    for name in sorted(COMMANDS):
        assert cli.main.get_command(None, name).name == name


def test_command_without_its_extra_names_the_extra_in_one_line(monkeypatch):
    monkeypatch.setattr(cli, "missing_requirements", lambda extra: ["redis"] if extra == "worker" else [])
    for args in (["enqueue", "s3://photos/2019", "--dest", "s3://clean/2019"], ["enqueue", "--help"],
                 ["worker"], ["run", "in", "--dest", "out"]):
        result = CliRunner().invoke(cli.main, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.strip().splitlines() == [
            f"Error: arcnn {args[0]} needs the worker extra: pip install 'arcnn[worker]'"]
    listing = CliRunner().invoke(cli.main, ["--help"])
    assert listing.exit_code == 0 and "enqueue" in listing.output and "restore" in listing.output


def test_installed_extras_are_found():
    assert cli.missing_requirements("worker") == []
    assert cli.missing_requirements("train") == []


def test_every_test_module_has_a_subset_and_unit_tests_need_no_servers():
    """`pytest -m unit` is the quick loop (README): its modules import neither the S3 and Redis
    clients nor the helpers that start servers."""
    from conftest import MARKERS, SUBSETS

    modules = {p.stem: p for p in (ROOT / "tests").glob("test_*.py")}
    assert set(modules) - set(SUBSETS) == set(), "add these modules to tests/conftest.py SUBSETS"
    assert set(SUBSETS.values()) <= set(MARKERS)
    heavy = {"moto", "boto3", "botocore", "redis", "worker_support", "ops_support"}
    unit = {name: sorted(imported_packages(modules[name]) & heavy) for name, subset in SUBSETS.items()
            if subset == "unit" and name in modules}
    assert {name: found for name, found in unit.items() if found} == {}



def test_only_from_settings_builds_a_restorer_from_settings():
    """``Restorer.from_settings`` is the one translation of :class:`~arcnn.settings.Settings` into
    a restorer: any other call that hands a restorer ``settings.<field>`` values is a second one,
    which drifts when a setting is added."""
    offenders = []
    for module in sorted(m for package in ("arcnn", "training", "worker") for m in (ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.value if isinstance(node.func, ast.Attribute) and node.func.attr == "load" else node.func
            if not (isinstance(func, ast.Name) and func.id.endswith("Restorer")):
                continue
            values = [*node.args, *(k.value for k in node.keywords)]
            if any(isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name) and "settings" in v.value.id
                   for v in values):
                offenders.append(f"{module.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def imported_modules(source: Path) -> set[str]:
    """Every module a module imports by absolute name, deferred imports included."""
    modules = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_making_models_imports_neither_the_studies_nor_the_commands():
    """training/ makes models; training/studies/ measures them for the docs and training/commands.py
    drives both from the CLI. Neither depends back on the other, so `arcnn train` runs whatever a
    study does and no two modules import each other (training.commands and training.platforms did)."""
    making = sorted(m for m in (ROOT / "training").glob("*.py") if m.name != "commands.py")
    assert {m.name for m in making} >= {"train.py", "data.py", "platforms.py", "transfer.py"}
    offenders = {str(m.relative_to(ROOT)): sorted(n for n in imported_modules(m)
                                                  if n == "training.commands" or n.startswith("training.studies"))
                 for m in making}
    assert {m: found for m, found in offenders.items() if found} == {}
