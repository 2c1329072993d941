"""The one exception type that means "the user gave us something we cannot use".

Command-line entry points catch it and print its message as a single line (no traceback), then
exit with EXIT_USER_ERROR. Every message says what is wrong and what to do about it.
"""

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input, a missing file, an unsupported configuration: a message for a person."""
