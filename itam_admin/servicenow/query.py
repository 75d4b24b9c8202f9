"""Values that go into a ServiceNow encoded query (`sysparm_query`): checked here, in one place, because the syntax
has no escape. A value that could start a new condition is refused, never passed on.
"""

from __future__ import annotations

# `^` joins conditions (`^OR`, `^NQ`, `^ORDERBY`) and ServiceNow documents no escape for it in a value (a
# ServiceNow community thread, "Not all scripted queries can be safely converted to an encoded query", 2016: "there
# is no way I know of to escape the carat character in encoded query search values"). A value starting with
# `javascript:` is evaluated as a script by the instance (`assigned_to=javascript:gs.getUserID()`).
_SCRIPT_PREFIX = "javascript:"


def encoded_query_value(text: str, *, in_list: bool = False) -> str:
    """Return `text` unchanged when it is safe as one value of an encoded query condition (`field=<text>`, or one
    item of `fieldIN<a>,<b>` when in_list), else raise ValueError saying why, in words a tenant admin can act on."""
    if not isinstance(text, str) or not text:
        raise ValueError("it is empty.")
    if "^" in text:
        raise ValueError("it contains ^, which ServiceNow reads as the start of another query condition.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValueError("it contains a line break or another control character.")
    if in_list and "," in text:
        raise ValueError("it contains a comma, which separates the items of a list in a ServiceNow query.")
    if text.strip().lower().startswith(_SCRIPT_PREFIX):
        raise ValueError("it starts with javascript:, which ServiceNow would run as a script.")
    return text
