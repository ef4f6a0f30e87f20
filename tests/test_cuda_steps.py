"""Whole training steps on the CUDA backend, against eager, under Numba's CUDA simulator (no GPU needed).

The cases of ``cuda_step_cases.py`` check where tensors' values live between steps; the compiled-step test
files (``cudasim.SUITE``) run once more with ``backend="cuda"``. Both run in subprocesses started when the
tests are collected (``cudasim.py``).
"""
import re

import pytest

import cudasim
from cuda_step_cases import CASES


@pytest.mark.simulator("cuda_step_cases")
@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_step(case):
    cudasim.check("cuda_step_cases", case)


@pytest.mark.slow
@pytest.mark.simulator("suite")
def test_the_compiled_step_tests_pass_on_the_cuda_backend():
    status, output = cudasim.suite()
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    assert status == 0, f"the compiled-step tests failed on the CUDA backend (simulator):\n{output[-8000:]}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 100, f"fewer tests ran than these files hold: {summary}"
