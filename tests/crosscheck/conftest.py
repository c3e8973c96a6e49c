"""Cross-check suite: every test here is marked ``crosscheck`` and adds its measured errors to one report."""
from __future__ import annotations

import pytest
import torchvision.models  # noqa: F401  torch's stack (torch._dynamo -> triton) must load before TensorFlow:
# the other order segfaults inside triton's import (TF 2.20 + torch 2.14.1, seen when openl3_keras loaded first)

from xc_common import RESULTS, report_markdown, write_report


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/crosscheck/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.crosscheck)


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        path = write_report()
        terminalreporter.write_line(f"\nport vs reference (float32, CPU) -> {path}\n" + report_markdown())
