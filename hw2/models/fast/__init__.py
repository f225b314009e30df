"""CPU implementations of the models of hw2/models: the same function, parameter tree (names,
shapes, initial values) and dropout masks as their definitions, written so that XLA's CPU backend
runs a training step faster. config.model.impl chooses ('auto': these on CPU). A reader who never
opens this folder understands the project; tests/test_models.py holds each implementation to its
definition, and BUILD.md gives what each departure from the library gains."""
