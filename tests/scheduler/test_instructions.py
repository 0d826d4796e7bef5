"""Instructions added to a promise from the chat: recorded once, folded, carried by every later work item; pure."""

from schemas.commands import NewPromise as T
from schemas.events import AttemptFailed, Created, Dispatched, InstructionsAdded, Started, Succeeded
from services.scheduler import intake
from services.scheduler.effects import Publish

from .sim import Sim

CHAT = 5


def respond_asks(sim: Sim, pid: int, commands: list[dict], message_id: int = 77) -> None:
    """A respond promise of the chat that answered with ``commands``, waiting for its spawn."""
    result = {"reply": "ok", "commands": commands}
    sim.record(Created(at=sim.now, id=pid, title="answer", task="respond", queue="respond", chat_id=CHAT,
                       message_id=message_id),
               Dispatched(at=sim.now, id=pid, attempt=1), Started(at=sim.now, id=pid, attempt=1),
               Succeeded(at=sim.now, id=pid, attempt=1, result=result))


def instructions(sim: Sim, pid: int) -> list[tuple[str, str]]:
    return [(i.text, i.request_id) for i in sim.state.promises[pid].instructions]


def test_a_respond_result_s_instructions_are_recorded_on_the_promise_and_join_its_work_item():
    sim = Sim(capacity={"default": 0, "respond": 10})  # nobody serves default yet: the task waits
    ids = sim.submit(T(name="task", type="echo", input="write the parser"))
    task = ids["task"]
    respond_asks(sim, 10, [{"verb": "instruct", "id": task, "text": "use pytest"}])
    effects = sim.step().effects
    [added] = [e.event for e in effects if isinstance(e, Publish) and isinstance(e.event, InstructionsAdded)]
    assert (added.id, added.text, added.request_id, added.by, added.message_id) == (
        task, "use pytest", "respond:10:0", "respond #10", 77)
    assert instructions(sim, task) == [("use pytest", "respond:10:0")]
    sim.capacity["default"] = 1
    sim.step()
    [item] = sim.take()
    assert item.input == "write the parser" and [i.text for i in item.instructions] == ["use pytest"]


def test_a_retry_s_work_item_carries_the_instructions_added_while_the_first_attempt_ran():
    sim = Sim()
    [task] = sim.submit(T(name="task", type="echo", retries=1)).values()
    sim.step()
    [first] = sim.take()
    sim.record(Started(at=sim.now, id=task, attempt=1))
    respond_asks(sim, 10, [{"verb": "instruct", "id": task, "text": "check the logs"}])
    sim.step()
    sim.record(AttemptFailed(at=sim.now, id=task, attempt=1, error="boom"))
    sim.settle()  # the retry is scheduled
    sim.now += 100
    sim.settle()
    [second] = sim.take()
    assert second.attempt == 2 and [i.text for i in second.instructions] == ["check the logs"]


def test_instructions_count_once_and_not_after_the_promise_ended():
    sim = Sim()
    [task] = sim.submit(T(name="task", type="echo")).values()
    added = InstructionsAdded(at=sim.now, id=task, text="use pytest", request_id="respond:10:0")
    assert sim.state.apply(added) and not sim.state.apply(added)  # a redelivered event changes nothing
    sim.step()
    [item] = sim.take()
    sim.run(item)
    late = InstructionsAdded(at=sim.now, id=task, text="too late", request_id="respond:11:0")
    assert not sim.state.apply(late)
    assert instructions(sim, task) == [("use pytest", "respond:10:0")]
    effects, reply = intake.instruct(sim.state, task, "too late", sim.now, "respond:11:0")
    assert effects == [] and reply.error == f"#{task} already succeeded"


def test_an_empty_instruction_records_nothing():
    sim = Sim(capacity={"default": 0, "respond": 10})
    [task] = sim.submit(T(name="task", type="echo")).values()
    respond_asks(sim, 10, [{"verb": "instruct", "id": task, "text": "  "}])
    sim.step()
    assert instructions(sim, task) == [] and sim.state.promises[10].children == {}
