"""sagedet: SSD object detection in PyTorch behind SageMaker's training and inference contract."""

__version__ = "0.1.0"
