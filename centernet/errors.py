"""The one exception type that means "the user gave us something we cannot use".

Command-line entry points catch it and print its message as a single line (no traceback), then
exit with EXIT_USER_ERROR. Every message says what is wrong and what to do about it, in the terms
of the command the user ran: a CLI's flags, or the variables of the script that ran the CLI
(`running_script`).
"""

import os

EXIT_USER_ERROR = 2
# scripts/_common.sh exports the name of the script the user ran; the CLIs it calls read it here.
SCRIPT_ENV = 'CENTERNET_SCRIPT'


class UserError(Exception):
    """Bad input, a missing file, an unsupported configuration: a message for a person."""


def running_script():
    """The scripts/*.sh the user ran (whose variables advice must name), or None for a CLI."""
    return os.environ.get(SCRIPT_ENV) or None


def option_name(flag, variable):
    """How the user sets an option: `flag` for a CLI, the script's `variable` under a script."""
    return variable if running_script() else flag
