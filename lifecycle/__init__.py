"""The main job: the whole local lifecycle on the bundled data, `python -m lifecycle` (the README's main command).

Modules, one idea each: ``pipeline`` (the steps in order; the first runs the training state machine of
``pipelines/`` on the local AWS of ``pipelines.local``), ``data`` (splits, scoring files, the drifted batch,
ground truth), ``realtime`` (combiner and data capture), ``batch`` (batch transform), ``watch`` (monitor runs,
evaluate, report), ``progress`` (numbered lines, failures).
"""
