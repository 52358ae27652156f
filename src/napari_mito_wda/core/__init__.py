"""Qt-free engine: model, targets, inference, instances, metrics, IO, training. No napari imports here."""
