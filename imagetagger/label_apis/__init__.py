"""Wire formats of the commercial label APIs the service stands in for, as pure functions.

``cloud_vision``: Google Cloud Vision v1 ``POST /v1/images:annotate`` (LABEL_DETECTION);
``rekognition``: Amazon Rekognition ``DetectLabels``; ``sigv4``: how a Rekognition
call's SigV4 ``Authorization`` is checked against the configured API keys. No Ray and no
HTTP server here: the ingress parses with these, runs the model, and answers with them.
"""
