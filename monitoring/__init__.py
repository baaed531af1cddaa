"""Model monitoring that speaks SageMaker Model Monitor's formats: baselines, data drift, model drift, reports.

Jobs (also dispatched by the ``byoc-monitor`` image):

- ``python -m monitoring.baseline``: statistics.json + constraints.json from training data (or, with
  ``--model-quality``, regression metrics + constraints from predictions and labels);
- ``python -m monitoring.monitor``: one monitoring run over captured real-time requests or batch output;
- ``python -m monitoring.merge``: combines the sketch states of sharded runs;
- ``python -m monitoring.report``: the HTML report over runs;
- ``monitoring.evaluate.handler``: the pipeline's "evaluate drift" Lambda.
"""
