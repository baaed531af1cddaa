"""The training pipeline's Lambda handlers. Each module is a whole deployment package on its own (standard library
and boto3 only, both in the Lambda runtime):

- ``query_metrics.handler``: the finished training job's RMSE (FinalMetricDataList, else its evaluation.json);
- ``compare_best.handler``: is it at least as good as the deployed model's (the SSM deployment document)?

An exception's class name is the ``Error`` a Step Functions Catch or Retry sees.
"""
