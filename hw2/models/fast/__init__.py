"""The CPU implementation of the CNN of hw2/models/cnn.py: the same function, parameter tree (names,
shapes, initial values) and dropout masks as its definition, written so that XLA's CPU backend
runs a training step faster. config.model.impl chooses ('auto': this on CPU). A reader who never
opens this folder understands the project; tests/test_models.py holds it to its definition, and
docs/performance.md gives what each departure from the library gains."""
