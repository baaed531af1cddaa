"""Running the pipelines on one machine.

Modules: ``runners`` (the images through Docker, or their entry points as local processes, behind one interface),
``jobs`` (the /opt/ml trees and mounts of jobs), ``sagemaker`` (a local SageMaker backend answering the API
operations the pipelines call, running real jobs and endpoints), ``intercept`` (routes this process's boto3
``sagemaker`` and ``sagemaker-runtime`` calls to that backend).
"""
