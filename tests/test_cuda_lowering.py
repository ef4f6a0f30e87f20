"""The CUDA code generator (backends/numba_cuda/program.py) against the interpreter, under Numba's CUDA simulator.

The cases live in ``cuda_lowering_cases.py`` and run in one subprocess with the simulator on (``cudasim.py``).
"""
import pytest

import cudasim
from cuda_lowering_cases import CASES


@pytest.mark.simulator("cuda_lowering_cases")
@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_lowering(case):
    cudasim.check("cuda_lowering_cases", case)
