"""Who speaks when in a mono recording, and which voice is the agent's.

Read in this order: ``embedding`` (CAM++ speaker embeddings: the weights read without torch, the
network in numpy and as an ONNX graph) -> ``model`` (where the weights come from, ``callqa model
install``, checksums, the onnxruntime session) -> ``diarize`` (windows over the voice activity,
embeddings clustered into voices) -> ``agent`` (which voice is the agent's, from what each says).
"""
