"""Whole training steps on the CUDA backend, against eager, under Numba's CUDA simulator (no GPU needed)."""
import pytest

import cudasim
from cuda_step_cases import CASES


@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_step(case):
    cudasim.check("cuda_step_cases", case)
