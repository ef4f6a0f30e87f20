"""The README's Python blocks run as written, each in a fresh interpreter, and print what they say."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"README block failed:\n{code}\n{result.stderr}"
    return result.stdout


def test_the_readme_has_its_use_and_compile_blocks():
    assert len(BLOCKS) >= 2 and any("torch.compile" in b for b in BLOCKS)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{k}" for k in range(len(BLOCKS))])
def test_a_readme_block_runs_as_written(code):
    out = _run(code)
    if "train_step.cache_info()" in code:
        # two eager calls (state is created lazily; the lr changed), one trace, then 97 replays at new lrs
        assert "hits=97" in out and "compiles=1" in out and "fallbacks=0" in out, out
