"""The main job: the whole local lifecycle on the bundled data, `python -m lifecycle` (the README's main command).

Modules, one idea each: ``pipeline`` (the steps in order), ``runners`` (Docker images or local processes behind
one interface), ``jobs`` (the /opt/ml trees and mounts of jobs), ``registry`` (the local model registry and the
gate), ``data`` (splits, scoring files, the drifted batch, ground truth), ``realtime`` (combiner and data capture),
``batch`` (batch transform), ``watch`` (monitor runs, evaluate, report), ``progress`` (numbered lines, failures).
"""
