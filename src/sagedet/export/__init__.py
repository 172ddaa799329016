"""Exported forms of a trained detector: TorchScript and ONNX graphs of :class:`DetectionGraph`
(images → scores, boxes), with NMS left to :func:`sagedet.model.ssd.select_detections`."""
