"""kdface: knowledge-distillation face analysis in Keras 3 / TensorFlow."""

__version__ = "0.1.0"


def predict_expressions(model_path, faces, unsafe_load_model: bool = False) -> list[dict]:
    """Expressions of face crops (``H x W x 3`` uint8 RGB) with a saved kdface expression model:
    one ``{"expression": name, "probabilities": {name: p}}`` per face. A model that takes pairs (DoE,
    Disentangled DoE step 2) takes ``(neutral, target)`` crops of one person instead of single faces:
    ``predict_expressions(model, [(neutral, target), ...])``. See
    :func:`kdface.tasks.expressions.evaluation.predict_expressions`."""
    from kdface.tasks.expressions.evaluation import predict_expressions as _predict

    return _predict(model_path, faces, unsafe_load_model)
