"""The generated settings reference stays in step with mythos_rt.settings, and every setting is
a ``serve`` flag."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from mythos_rt.__main__ import env_var, main
from mythos_rt.settings import setting_fields

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "gen_settings_doc.py"
CONFIGURATION = ROOT / "docs" / "CONFIGURATION.md"


def _load_generator() -> ModuleType:
    # scripts/ is not a package: load the script by path.
    spec = importlib.util.spec_from_file_location("gen_settings_doc", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return _load_generator()


def test_configuration_doc_is_current(generator: ModuleType) -> None:
    # On failure: run `python scripts/gen_settings_doc.py` and commit docs/CONFIGURATION.md.
    assert CONFIGURATION.read_text(encoding="utf-8") == generator.render()
    assert generator.main(["--check"]) == 0


def test_check_fails_on_a_stale_doc(generator: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "CONFIGURATION.md"
    stale.write_text(generator.render().replace("--grace-s", "--old-name"), encoding="utf-8")
    assert generator.main(["--check", "--output", str(stale)]) == 1
    assert generator.main(["--check", "--output", str(tmp_path / "missing.md")]) == 1


def test_generator_writes_the_doc(generator: ModuleType, tmp_path: Path) -> None:
    output = tmp_path / "CONFIGURATION.md"
    assert generator.main(["--output", str(output)]) == 0
    assert generator.main(["--check", "--output", str(output)]) == 0


@pytest.mark.parametrize("name", [field.name for field in setting_fields()])
def test_every_setting_is_in_the_doc(name: str) -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    assert f"`--{name.replace('_', '-')}`" in text
    assert f"`{env_var(name)}`" in text


def test_every_setting_is_a_serve_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps help to the terminal width
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    missing = [
        field.name
        for field in setting_fields()
        if "--" + field.name.replace("_", "-") not in out or env_var(field.name) not in out
    ]
    assert missing == []
