"""The inference server (``docker run IMAGE serve``) and local prediction.

settings  SAGEMAKER_* / SAGEDET_* environment → one validated :class:`~.settings.ServeSettings`
errors    HTTP errors: a status and a reason for the client
codecs    request bytes → RGB image; Content-Type, Accept, custom attributes; detections → JSON
predictor the model on its device: pre-processing, detection, thresholds
app       the flask routes (/ping, /invocations, /execution-parameters)
wsgi      what gunicorn imports in each worker: settings + model → app
draw      boxes, labels and scores drawn on an image (``sagedet predict --draw``)
local     ``sagedet predict IMAGE... --model DIR``
"""
