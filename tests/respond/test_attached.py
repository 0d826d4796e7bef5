"""Files sent with a message reach the tasks it asks for by their paths; a file not saved is never silent."""

import msgspec

from schemas.commands import NewPromise, RespondResult
from schemas.events import Attachment
from services.executor.claude import render_prompt
from services.executor.respond import Responder, attached
from services.executor.respond.commands import answer
from valor.config import DEFAULT

from .helpers import message

REPORT = Attachment(name="report.csv", path="inbox/7/100-report.csv", size=2048, mime_type="text/csv")
BIG = Attachment(name="dump.sql", size=30 << 20, mime_type="application/sql",
                 skipped="too big: 30.0 MB, the limit is 20.0 MB")


def with_files(text: str, *files: Attachment):
    return msgspec.structs.replace(message(text), attachments=list(files))


def test_each_file_is_one_line_saved_or_not():
    assert attached.line(REPORT) == "Attached: inbox/7/100-report.csv (text/csv, 2.0 KB)"
    assert attached.line(BIG) == "Not attached: dump.sql (too big: 30.0 MB, the limit is 20.0 MB)"


def test_do_with_a_file_puts_its_path_into_the_task_input_which_a_code_task_reads():
    r = answer(with_files("/do sum the totals per region", REPORT, BIG), None, DEFAULT)
    [task] = r.promises
    assert (task.title, task.input) == ("sum the totals per region", "sum the totals per region\n\n"
                                        "Attached: inbox/7/100-report.csv (text/csv, 2.0 KB)\n"
                                        "Not attached: dump.sql (too big: 30.0 MB, the limit is 20.0 MB)")
    prompt = render_prompt(DEFAULT.types["code"].prompt, task.title, task.input, {}, "/srv/ws")
    assert "Attached: inbox/7/100-report.csv" in prompt  # what Claude Code is asked, in the workspace


def test_every_task_of_a_plan_gets_the_files_and_an_object_input_gets_a_list():
    r = answer(with_files('/plan\nread: code: read it\nrun: shell: {"argv": ["wc", "-l"]} [after read]\n'
                          'own: echo: {"attachments": "mine"}', REPORT), None, DEFAULT)
    read, run, own = r.promises
    assert read.input == "read it\n\nAttached: inbox/7/100-report.csv (text/csv, 2.0 KB)"
    assert run.input == {"argv": ["wc", "-l"], "attachments": [
        {"name": "report.csv", "path": "inbox/7/100-report.csv", "size": 2048, "mime_type": "text/csv"}]}
    assert own.input == {"attachments": "mine"}  # the user's own key is left alone


def test_a_command_without_files_is_unchanged():
    assert answer(message("/do sum it"), None, DEFAULT).promises == [
        NewPromise(name="code", type="code", title="sum it", input="sum it")]


def test_a_file_sent_alone_is_answered_with_where_it_is():
    r = answer(with_files("", REPORT), None, DEFAULT)
    assert r.promises == [] and r.reply.startswith("Saved in this chat's workspace: inbox/7/100-report.csv.")


async def test_the_reply_says_which_file_was_not_saved_whatever_the_answer():
    responder = Responder(DEFAULT, nc=None)  # /do and a bare file need no log
    done = await responder.answer(with_files("/do load it", BIG))
    assert done.reply == ("Promised a code task: load it\n\n"
                          "dump.sql was not saved: too big: 30.0 MB, the limit is 20.0 MB.")
    alone = await responder.answer(with_files("", BIG))
    assert alone == RespondResult(reply="dump.sql was not saved: too big: 30.0 MB, the limit is 20.0 MB.")
    assert (await responder.answer(with_files("/do load it", REPORT))).reply == "Promised a code task: load it"
