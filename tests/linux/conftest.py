from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "linux"


@pytest.fixture
def data() -> Path:
    return DATA
