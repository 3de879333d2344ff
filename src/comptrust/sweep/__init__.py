"""Sweeps: models x compression configs x seeds x perspectives from one YAML file.

``load_sweep`` validates the file, ``build_plan`` expands it (dense baseline
added, identical artifacts merged), and an executor (``local`` or ``ray``)
runs the jobs resumably; see docs/scale.md.
"""

from comptrust.sweep.config import SweepConfig, load_sweep
from comptrust.sweep.plan import Artifact, Job, Plan, build_plan

__all__ = ["Artifact", "Job", "Plan", "SweepConfig", "build_plan", "load_sweep"]
