"""Helpers the tests share (not fixtures: those stay in each folder's conftest.py), one module per concern.

Imported as ``support.<module>``: pyproject.toml's pytest ``pythonpath`` puts tests/ on sys.path.

- ``tiny_model``: tiny random BERT models and WordPiece tokenizers built from a config.
- ``tiny_classifiers``: tiny classifiers fine-tuned on a synthetic keyword task (export, predictor).
- ``torch_reference``: PyTorch FP32 reference probabilities for the predictor's inputs.
- ``training``: a learnable synthetic data set, an /opt/ml tree and a ``textclf train`` runner.
- ``serving``: SM_ROOT trees and the real ``textclf serve`` as a child process.
- ``reliability``: the reliability ledger, raw-socket HTTP, process-group inspection, a load generator.
- ``aws``: the ops tests' config, a recorder of AWS requests, a completed training job in moto.
- ``docker_engine``: a dockerd of the tests' own and the Debian base image for the container tests.
- ``local_mode``: the SageMaker SDK's ``LocalSession`` on that dockerd (jobs, endpoints, transforms).
- ``invoke_endpoint_standin``: a local server speaking InvokeEndpoint's REST shape, for boto3's real
  ``sagemaker-runtime`` client, forwarding to a running serve stack.
"""
