from tests.runner.conftest import fal

__all__ = ["fal"]
