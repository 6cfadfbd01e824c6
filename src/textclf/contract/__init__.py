"""What ``train`` and ``serve`` agree on: the ``/opt/ml`` layout, the model directory, metric lines, CPUs.

Imports nothing from ``model``, ``train``, ``export`` or ``serve``, and no torch or transformers.
"""
