"""The user guide's screenshots exist, are small, and every picture the docs link to is in the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "user_guide.md"


def _image_links(md: Path) -> list[Path]:
    return [(md.parent / m).resolve() for m in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", md.read_text())]


def test_guide_and_readme_pictures_exist():
    guide = _image_links(GUIDE)
    assert len(guide) >= 6
    readme = _image_links(ROOT / "README.md")
    assert (ROOT / "docs/images/guide/04_adapting.png").resolve() in readme
    for path in guide + readme:
        assert path.is_file(), path


def test_guide_pictures_are_small_pngs():
    for path in _image_links(GUIDE):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        assert path.stat().st_size < 300_000, (path, path.stat().st_size)


def test_screenshot_script_is_named_in_the_guide():
    assert (ROOT / "scripts" / "make_screenshots.py").is_file()
    assert "scripts/make_screenshots.py" in GUIDE.read_text()
