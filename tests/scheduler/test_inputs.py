"""A round of inputs, planned with plain values: ids in order, one input per key and round, refusals."""

from __future__ import annotations

from schemas.commands import Cancel, CommandReply, NewPromise, Submit
from schemas.events import MessageEdited, MessageReceived, encode
from services.scheduler.inputs import DeadLetter, Failed, Input, Later, Store, plan_round, reply_to_of
from services.scheduler.projection import Projection
from valor.config import DEFAULT

from .sim import Sim

MAX = 1024 * 1024
NOW = 1000.0


def cmd(command) -> Input:
    return Input("command", encode(command))


def chat(message) -> Input:
    return Input("chat", encode(message))


def submit(request_id: str, *types: str, reply_to: str | None = None) -> Input:
    return cmd(Submit(request_id=request_id, reply_to=reply_to, tasks=[NewPromise(type=t) for t in types]))


def created_ids(outcome) -> list[int]:
    return [p.event.id for p in outcome.effects if p.new_subject]


def test_ids_run_on_across_the_round_from_the_log_s_highest():
    sim = Sim()
    sim.submit(NewPromise(type="echo"), NewPromise(type="echo"))  # ids 1, 2
    out = plan_round(sim.state, [submit("a", "echo", "echo"), chat(MessageReceived(chat_id=7, message_id=1, text="hi")),
                                 submit("b", "noop")], NOW, DEFAULT, MAX)
    assert [type(o) for o in out] == [Store, Store, Store]
    assert [created_ids(o) for o in out] == [[3, 4], [5], [6]]
    assert out[0].reply == CommandReply(ok=True, ids={"0": 3, "1": 4})


def test_a_second_input_about_the_same_thing_waits_for_the_next_round_and_takes_no_id():
    message = MessageReceived(chat_id=7, message_id=1, text="hi")
    edit = MessageEdited(chat_id=7, message_id=1, edited_at=5.0, message=message)
    out = plan_round(Projection(), [submit("a", "echo"), submit("a", "echo"), chat(message), chat(edit),
                                    submit("c", "echo")], NOW, DEFAULT, MAX)
    assert [type(o) for o in out] == [Store, Later, Store, Later, Store]
    assert out[1] == Later(("request", "a")) and out[3] == Later(("chat", 7, 1))
    assert [created_ids(o) for o in out if isinstance(o, Store)] == [[1], [2], [3]]


def test_an_input_whose_event_is_over_the_payload_limit_is_refused_not_stored():
    big = "x" * 5000
    out = plan_round(Projection(), [
        cmd(Submit(request_id="a", tasks=[NewPromise(type="echo", input=big)])),
        chat(MessageReceived(chat_id=7, message_id=1, text=big)),
        submit("b", "echo"),
    ], NOW, DEFAULT, max_payload=4096)
    refused, dead, fine = out
    assert isinstance(refused, Store) and refused.effects == [] and not refused.reply.ok
    assert "the request is too big: promise #1" in refused.reply.error and "over the limit of 3072" in refused.reply.error
    assert isinstance(dead, DeadLetter) and dead.origin == "chat" and not dead.undecodable
    assert "too big" in dead.reason
    assert created_ids(fine) == [1]  # a refused input takes no id


def test_undecodable_inputs_are_dead_lettered_and_a_waiting_caller_is_told():
    out = plan_round(Projection(), [
        Input("command", b'{"type":"submit","request_id":"a","reply_to":"_INBOX.x","tasks":7}'),
        Input("command", b'{"type":"warp","reply_to":"elsewhere.subject"}'),
        Input("chat", b"not json"),
    ], NOW, DEFAULT, MAX)
    assert [type(o) for o in out] == [DeadLetter] * 3
    assert out[0].reply_to == "_INBOX.x" and out[0].reason.startswith("undecodable command: ")
    assert out[1].reply_to is None  # only an inbox is answered
    assert out[2].origin == "chat" and out[2].undecodable


def test_an_input_that_raises_fails_alone():
    out = plan_round(Projection(), [cmd(Cancel(request_id="c", id=99)), submit("a", "warp"), submit("b", "echo")],
                     NOW, DEFAULT, MAX)
    assert out[0].reply == CommandReply(ok=False, error="no promise #99")
    assert not out[1].reply.ok and "warp" in out[1].reply.error  # a refused plan is an answer, not a failure
    assert created_ids(out[2]) == [1]

    class Exploding(dict):
        def get(self, *args):
            raise RuntimeError("boom")

    broken = Projection()
    broken.by_request = Exploding()  # a submit reads it first; a cancel never does
    out = plan_round(broken, [submit("a", "echo"), cmd(Cancel(request_id="c", id=1))], NOW, DEFAULT, MAX)
    assert isinstance(out[0], Failed) and str(out[0].error) == "boom"
    assert isinstance(out[1], Store)


def test_reply_to_of_reads_only_an_inbox():
    assert reply_to_of(b'{"reply_to": "_INBOX.abc"}') == "_INBOX.abc"
    assert reply_to_of(b'{"reply_to": "cmd.submit"}') is None
    assert reply_to_of(b"[" * 100_000) is None
