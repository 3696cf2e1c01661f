"""The layout keeps its promises: the two halves of the pipeline do not reach into each other, each
package imports only what sits below it, every module says what it holds, the front door resolves."""

import ast
from pathlib import Path

import pytest

import pipeline

PACKAGE = Path(pipeline.__file__).parent

# What each part may import from the rest of pipeline (besides itself and the shared foundation).
FOUNDATION = {"pipeline.errors", "pipeline.validation", "pipeline.config", "pipeline.records", "pipeline.schemas",
              "pipeline.text"}
ALLOWED = {
    "pipeline.transcribe": {"pipeline.storage.hashing", "pipeline.storage.install", "pipeline.speakers"},  # audio -> utterances; hashes
    # recordings and weights; splits mono recordings into voices
    # voices of a mono recording, and which is the agent's; its model is installed as the Whisper one is
    "pipeline.speakers": {"pipeline.storage.hashing", "pipeline.storage.install"},
    "pipeline.rules": set(),  # utterances -> findings: pure, nothing but the foundation
    # the second listening: the rules' phrase findings asked again of the audio, with the model
    "pipeline.verify": {"pipeline.rules", "pipeline.transcribe.audio", "pipeline.transcribe.model",
                        "pipeline.transcribe.speech"},
    # where transcripts come from: Whisper here (the first half and the second listening) or imported
    # files; and the results' transcripts written out for import
    "pipeline.engines": {"pipeline.transcribe", "pipeline.verify", "pipeline.storage"},
    "pipeline.storage": set(),  # the tables: knows rows, not how they were made
    "pipeline.scoring": {"pipeline.rules", "pipeline.storage.rows"},  # no file I/O: pipeline.publish reads and writes
    "pipeline.review": {"pipeline.rules", "pipeline.scoring", "pipeline.storage", "pipeline.transcribe.audio"},
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """The pipeline modules ``name`` imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipeline")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base.startswith("pipeline"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules()}
    return found


def part_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


@pytest.mark.parametrize("name", sorted(n for n in modules() if part_of(n) in ALLOWED))
def test_each_part_imports_only_what_sits_below_it(name):
    part = part_of(name)
    allowed = FOUNDATION | ALLOWED[part]
    wrong = sorted(m for m in imports_of(name, modules()[name]) if m != "pipeline" and part_of(m) != part
                   and m not in allowed and not any(m.startswith(a + ".") for a in allowed))
    assert wrong == [], f"{name} imports {wrong}"


def test_the_foundation_imports_only_the_foundation():
    for name in FOUNDATION:
        wrong = sorted(imports_of(name, modules()[name]) - FOUNDATION - {"pipeline"})
        assert wrong == [], f"{name} imports {wrong}"


def test_every_module_says_what_it_holds_and_folders_stay_small():
    for name, path in modules().items():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc and len(doc) > 40, f"{name} has no docstring saying what it holds"
    for folder in [PACKAGE, *[p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()]]:
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        assert count <= 12, f"{folder.name} holds {count} modules"


def test_the_front_door_names_every_entry_point():
    assert len(pipeline.__all__) >= 20
    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None, name
    with pytest.raises(AttributeError):
        pipeline.no_such_thing  # noqa: B018


def test_every_error_class_lives_in_errors():
    from pipeline import errors

    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                   and not node.name.startswith("_")  # private signals that never leave their module
                   and any(getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception")) for b in node.bases)]
        assert name == "pipeline.errors" or defined == [], f"{name} defines error classes {defined}"
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == errors.__name__:
            assert issubclass(cls, errors.PipelineError) and cls.stage, cls


# The README's reading order: within each package, a module imports only modules read before it.
READING_ORDER = {
    "pipeline.transcribe": ["discover", "audio", "roles", "turns", "speech", "model", "decode", "guard", "privacy",
                            "streaming", "mono", "recording"],
    "pipeline.speakers": ["embedding", "model", "diarize", "agent"],
    "pipeline.storage": ["hashing", "install", "rows", "lock", "transaction", "parquet", "incremental", "staging"],
    "pipeline.rules": ["options", "scorefile", "verification", "lexicon", "matching", "details", "promises", "putonghua",
                       "checks", "engine", "dialogue"],
    "pipeline.verify": ["rivals", "scorer", "listen"],
    "pipeline.engines": ["whisper", "imported", "export"],
    "pipeline.scoring": ["rubric", "scorable", "scores", "verdicts", "tables"],
    "pipeline.review": ["explore", "charts", "examples", "reviews", "precision", "satisfaction", "server"],
}


@pytest.mark.parametrize("package", sorted(READING_ORDER))
def test_modules_can_be_read_in_the_readme_order(package):
    order = READING_ORDER[package]
    listed = {n.rsplit(".", 1)[1] for n in modules() if n.startswith(package + ".")}
    assert listed == set(order), f"{package}: the reading order lists {sorted(set(order) ^ listed)} wrongly"
    for i, short in enumerate(order):
        name = f"{package}.{short}"
        later = {f"{package}.{m}" for m in order[i + 1:]}
        assert not imports_of(name, modules()[name]) & later, f"{name} imports a module read after it"
