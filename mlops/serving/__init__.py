"""The prediction server (Vertex AI custom-container contract) and its request parsing.

`python -m mlops.serving` is the project image's default command: it serves the model at
`AIP_STORAGE_URI` on `AIP_HTTP_PORT`."""
