"""strata: generative media from idea to finished file — generate, select, edit, composite,
enhance, sound & motion, iterate — with every output reproducible from its own metadata.

Public API::

    import strata
    b = strata.WorkflowBuilder(name="poster", seed=7)
    photo = b.add("io.sample_image", name="astronaut")
    b.output("out.png", b.add("enhance.exposure", image=photo, stops=0.5))
    result = strata.run(b.build(), out_dir="out")

    strata.load_workflow("examples/poster.yaml")   # YAML/JSON → the same Workflow model
    strata.ops()                                   # op id → NodeSpec (schemas)
"""

__version__ = "0.1.0"

import os as _os

# OpenMP's default is to spin while waiting between parallel regions. On a busy machine (a
# training job, a browser, another strata) two spinning threads on two cores starve each other:
# measured 73 s instead of 0.95 s for one batch of a small model. Passive waiting costs little
# when the machine is idle. Set before torch loads OpenMP; a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from strata.errors import MediaError, ModelError, OpError, RunInterrupted, StoreError, StrataError, WorkflowError
from strata.media import Image, Mask
from strata.store import Store
from strata.workflow.builder import WorkflowBuilder
from strata.workflow.executor import Executor, RunResult, run
from strata.workflow.node import load_builtin_ops as ops
from strata.workflow.spec import Workflow, load_workflow
from strata.workflow.validate import validate

__all__ = [
    "Executor", "Image", "Mask", "MediaError", "ModelError", "OpError", "RunInterrupted", "RunResult", "Store",
    "StoreError", "StrataError", "Workflow", "WorkflowBuilder", "WorkflowError", "load_workflow", "ops", "run",
    "validate", "__version__",
]
