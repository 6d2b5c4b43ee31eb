"""The README's Python example runs as written, against the test broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_readme_api_example_runs(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    [api_example] = [b for b in python_blocks() if "WorkflowRuntime()" in b]
    env = {**os.environ, "KWF_BOOTSTRAP_SERVERS": kafka_bootstrap, "KWF_TOPIC_PREFIX": topic_prefix,
           "KWF_PARTITIONS": "2", "KWF_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", api_example], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'WorkflowStatus.COMPLETED "Approved by Jane"' in done.stdout, done.stdout
