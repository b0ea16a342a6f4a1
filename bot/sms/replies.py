"""Read a radiologist's SMS reply: a command word, then perhaps a case code.

Pure functions, no database: ``"Yes, K7Q2XM!"``, ``"yes k7q2xm"`` and
``"YES K7Q2 XM"`` all read as accept K7Q2XM. Case, spaces and punctuation do
not matter; the first word is the command and everything after it, run
together, is the case code.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Command(enum.StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"
    LINK = "link"
    STATUS = "status"
    HELP = "help"
    STOP = "stop"
    START = "start"
    UNKNOWN = "unknown"


#: Each word a radiologist (or a carrier's keyword list) may start a reply with.
COMMAND_WORDS: dict[str, Command] = {
    **dict.fromkeys(("YES", "Y", "ACCEPT"), Command.ACCEPT),
    **dict.fromkeys(("NO", "N", "DECLINE"), Command.DECLINE),
    "LINK": Command.LINK,
    "STATUS": Command.STATUS,
    **dict.fromkeys(("HELP", "INFO"), Command.HELP),
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"), Command.STOP),
    **dict.fromkeys(("START", "UNSTOP"), Command.START),
}
#: Keywords Twilio answers itself when they make up the whole message (Advanced Opt-Out).
CARRIER_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "START", "UNSTOP", "HELP", "INFO"}
)
_NOT_WORD = re.compile(r"[^0-9A-Z]+")
MAX_CODE_LENGTH = 12  # Case.number's column


@dataclass(frozen=True)
class Instruction:
    """What a reply asks for; ``code`` is ``None`` when no case code was given."""

    command: Command
    code: str | None = None
    #: The whole message is a keyword Twilio answers itself (STOP, START, HELP).
    carrier_keyword: bool = False


def parse_reply(body: str) -> Instruction:
    """Return the command and case code in an SMS ``body``.

    An unknown first word gives :attr:`Command.UNKNOWN`; so does a "code" too
    long to be a case number (a sentence typed after YES, say).
    """
    words = _NOT_WORD.sub(" ", body.upper()).split()
    if not words:
        return Instruction(Command.UNKNOWN)
    command = COMMAND_WORDS.get(words[0], Command.UNKNOWN)
    code = "".join(words[1:]) or None
    if command is Command.UNKNOWN or (code is not None and len(code) > MAX_CODE_LENGTH):
        return Instruction(Command.UNKNOWN)
    return Instruction(
        command, code, carrier_keyword=len(words) == 1 and words[0] in CARRIER_KEYWORDS
    )
