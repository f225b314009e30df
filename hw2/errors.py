"""The one exception type for mistakes in user input."""


class UserError(Exception):
  """A bad file, flag or value supplied by the user.

  `main.py` prints the message as a single line (no traceback) and exits with status 1. The message
  must name the offending file, flag or value.
  """
