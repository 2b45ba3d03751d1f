"""The one exception type for mistakes a user can fix, and how its messages quote a bad value.

The CLI turns it into a single red line and exit code 2; everything else is a bug and keeps its traceback.
"""

import json
from typing import Any

QUOTED_CHARS = 40  # of a bad value a message quotes: enough to recognise it, never a whole document


class UserError(Exception):
    """A problem with the user's input or options; the message names the problem and the fix."""


def quoted(value: Any) -> str:
    """A value from the user's data as a message shows it: as JSON, cut at QUOTED_CHARS characters."""
    return json.dumps(value)[:QUOTED_CHARS]
