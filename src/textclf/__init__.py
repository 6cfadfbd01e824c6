"""textclf: a SageMaker bring-your-own container for BERT-family text classification."""

__version__ = "0.1.0"
