"""The package keeps the style guide's shape: small modules with one job each."""
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'nh_stefaland'
MAX_LINES = 300  # the style guide's bound for a module (../shared/STYLE.md, "Shape of a module")


def test_every_module_stays_within_the_style_guides_length():
    lengths = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in PACKAGE.rglob('*.py')}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
