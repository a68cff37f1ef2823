"""How long OpenMP threads spin-wait between parallel regions: set before torch is imported.

torch's CPU kernels run on an OpenMP pool (libgomp on Linux). Between two parallel regions its threads busy-wait
for up to ``GOMP_SPINCOUNT`` spins (300,000 by default) before sleeping. As soon as another process wants the cores
(data-loader workers, a second job), those spinning threads take the time it needs, and training slows down several
times; ``OMP_WAIT_POLICY=PASSIVE`` is safe but wakes every thread for each of the model's many small kernels. A
short bounded spin keeps most of the speed and stays safe, so the training entry points use it unless the user
chose a policy.
"""

from __future__ import annotations

import os

SPIN_COUNT = "2000"


def bound_openmp_spin_wait() -> None:
    """Sets ``GOMP_SPINCOUNT`` to a short spin unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is already set.

    Call it before ``import torch``: the OpenMP runtime reads the variables once, when it starts.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
