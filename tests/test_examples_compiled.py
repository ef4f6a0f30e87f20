"""Every example prints the same results with its step functions under @tracegrad.compile."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# every test runs per compiling backend; each runs two subprocesses, so the quick subset leaves them out
pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py")
                  if re.search(r"^def \w*step\(", p.read_text(), re.M) and "torch.compile(" not in p.read_text())
SLOW = {"mlp_digits"}


def _run(script: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-W", "ignore", str(script)], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _compiled_copy(script: Path, target: Path) -> Path:
    """The script with `name = torch.compile(name)` after the definitions of its step functions."""
    source = script.read_text()
    steps = re.findall(r"^def (\w*step)\(", source, re.M)
    wrapped = "".join(f"{name} = torch.compile({name})\n" for name in steps)
    source = source.replace('\nif __name__ == "__main__":', f"\n{wrapped}\n\nif __name__ == \"__main__\":")
    target.write_text(source)
    return target


@pytest.mark.parametrize("script", [pytest.param(p, marks=[pytest.mark.slow] if p.stem in SLOW else [], id=p.stem)
                                    for p in EXAMPLES])
def test_compiled_example_prints_what_eager_prints(script, tmp_path):
    if script.stem == "mlp_digits":
        pytest.importorskip("sklearn")
    assert _run(_compiled_copy(script, tmp_path / script.name)) == _run(script)
