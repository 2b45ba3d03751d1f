"""The one exception type for mistakes a user can fix.

The CLI turns it into a single red line and exit code 2; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or options; the message names the problem and the fix."""
