"""Where the repository and the tests' data files are, wherever a test file sits."""

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
TEST_DATA = REPOSITORY / "tests" / "data"
