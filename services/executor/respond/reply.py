"""Keeping replies honest, and naming promises by their real ids once they exist.

The agent's reply is written before its promises exist: the scheduler creates
them from the respond result and records ``spawned`` (plan name -> id).  So a
reply refers to tasks by their plan names, and whoever sends it after
``spawned`` (the notifier) calls ``reply_with_ids`` to add the real ids.

``honest_reply`` checks a reply against what this turn produced and what the
log records, before it is recorded: announcing work needs a promise or a
command of this turn; claiming a result ("done", "the tests pass", "I've
fixed it") needs a promise named in the claim whose recorded state is
``succeeded``.  A sentence that claims more than that is qualified, not
dropped, so the rest of the answer still reaches the chat.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from promises.states import State
from schemas.commands import NewPromise, RespondCommand

# Words that announce work: a reply that says them must be backed by a promise.
ANNOUNCES_WORK = re.compile(
    r"\b(i['’]ll|i will|i am going to|i['’]m going to|i['’]m starting|i am starting|i['’]ve started|"
    r"i have started|i['’]m on it|^\s*on it|starting (?:on|now|to|with)|let me (?:start|get started|do|work)|"
    r"working on (?:it|that|this)|i['’]ll get (?:on|started))\b",
    re.IGNORECASE,
)
NOTHING_STARTED = "I haven't started anything yet (no task was created): "
# The one wording for a claimed result the log does not back.
NO_RECORDED_RESULT = "I have no recorded result saying that yet"

# Words that claim a result.  Group 1 is the claiming word; the words just before it
# decide whether it is a claim at all ("not done", "when it passes").
_I = re.IGNORECASE
CLAIMS_SUCCESS = [
    re.compile(r"\b(succeeded|successful(?:ly)?|fixed|resolved|merged|deployed|shipped|implemented)\b", _I),
    re.compile(r"(?:(?<!\w)#\d+|\b(?:tests?|checks?|specs?|suites?|builds?|ci|everything|all))\b[^.;!?\n]{0,30}?"
               r"\b(pass(?:es|ed|ing)?)\b", _I),
    re.compile(r"\b(?:all|is|are|now|ci)\s+(green)\b", _I),
    re.compile(r"\b(?:it|this|that|everything)\s+(?:now\s+)?(works)\b", _I),
    re.compile(r"\b(working)\s+(?:now|again)\b", _I),
    re.compile(r"\bi(?:['’]ve|\s+have)?\s+(finished|completed|done|written|wrote|run|ran|tested|built|updated|"
               r"changed|solved)\b", _I),
]
# Saying work ended, which is a claim of success unless the same clause says it went wrong.
CLAIMS_END = re.compile(r"\b(done|finished|complete(?:d)?)\b", _I)
REPORTS_FAILURE = re.compile(r"\b(?:fail(?:s|ed|ure|ing)?|errors?|cancel(?:l)?ed|timed out|unsuccessful(?:ly)?|"
                             r"crash(?:ed)?|broken?)\b", _I)
HEDGES = frozenset("not never no none nothing nobody neither nor without when whenever once until till after before "
                   "if unless whether how will would should could might may can must shall be to going".split())
PROMISE_REF = re.compile(r"#(\d+)\b")
SENTENCE_BREAK = re.compile(r"((?<=[.!?])\s+|\s*\n\s*)")
# Clauses: after a contrast word, or where a new "#N is/failed/..." begins ("#12 passed, #14 is running").
CLAUSE_BREAK = re.compile(r";|,?\s+\b(?:but|while|whereas|although|though|however)\b|(?:,|\s+and)\s+(?=#\d+\s+"
                          r"(?:is|was|are|were|has|had|still|failed|succeeded|passed|finished|ended|got|did)\b)", _I)


def announces_work(text: str) -> bool:
    return bool(ANNOUNCES_WORK.search(text))


def _hedged(before: str) -> bool:
    """Whether the words just before a claiming word make it no claim: negated, conditional, future."""
    for word in re.findall(r"[\w'’]+", before.lower())[-3:]:
        if word in HEDGES or word.endswith(("n't", "n’t", "'ll", "’ll")):
            return True
    return False


def claims_result(clause: str) -> bool:
    """Whether the clause says work is done, fixed or passing."""
    for pattern in CLAIMS_SUCCESS:
        if any(not _hedged(clause[:m.start(1)]) for m in pattern.finditer(clause)):
            return True
    return not REPORTS_FAILURE.search(clause) and any(
        not _hedged(clause[:m.start(1)]) for m in CLAIMS_END.finditer(clause))


def _clauses(sentence: str) -> list[str]:
    out: list[str] = []
    for part in CLAUSE_BREAK.split(sentence):
        if out and not re.sub(r"#\d+|\band\b|[\s,]", "", out[-1]):  # "#12, #13 and #14 passed": one clause
            out[-1] += " and " + part
        else:
            out.append(part)
    return out


def _qualified(sentence: str, against: Mapping[int, str]) -> str:
    facts = ", ".join(f"#{pid} {state}" for pid, state in against.items())
    return f"{NO_RECORDED_RESULT}{f' (the log has {facts})' if facts else ''}: {sentence}"


def check_claims(text: str, recorded: Mapping[int, str]) -> str:
    """The text with every sentence that claims an unrecorded result qualified.

    ``recorded`` is the state of each of the chat's promises as the log has it
    (``ChatView.states()``).  A claim is backed when the promises it names
    (``#12``), or else the ones the nearest earlier clause named ("#12
    succeeded. All tests pass."), include one recorded as ``succeeded`` and
    none recorded in another state.  An id that is none of the chat's
    promises (an issue number, #45) backs nothing.
    """
    pieces = SENTENCE_BREAK.split(text)
    named: list[int] = []
    for i in range(0, len(pieces), 2):  # the odd pieces are the breaks between sentences
        against: dict[int, str] = {}
        unbacked = False
        question = pieces[i].rstrip().endswith("?")
        for clause in _clauses(pieces[i]):
            named = [int(n) for n in PROMISE_REF.findall(clause)] or named
            if question or not claims_result(clause):
                continue
            known = {pid: recorded[pid] for pid in named if pid in recorded}
            wrong = {pid: state for pid, state in known.items() if state != State.SUCCEEDED}
            if not known or wrong:
                unbacked = True
                against.update(wrong)
        if unbacked:
            pieces[i] = _qualified(pieces[i], against)
    return "".join(pieces)


def honest_reply(text: str, promises: Sequence[NewPromise], commands: Sequence[RespondCommand] = (),
                 recorded: Mapping[int, str] | None = None) -> str:
    """The reply, corrected where it says more than this turn and the log back.

    Work announced while nothing was promised or commanded this turn qualifies
    the whole reply; each sentence claiming a result the log does not record
    (see ``check_claims``) is qualified where it stands.
    """
    text = text.strip()
    checked = check_claims(text, recorded or {})
    if promises or commands or not announces_work(text):
        return checked
    return NOTHING_STARTED + checked


