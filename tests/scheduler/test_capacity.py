"""The scheduler's capacity per queue, from executors' heartbeats (pure), and what it lets through."""

from schemas.commands import ExecutorHeartbeat, SlotPool
from schemas.commands import NewPromise as T
from services.scheduler.capacity import slots_per_queue

from .sim import Sim

NOW = 1000.0


def beat(name: str, *pools: tuple[list[str], int], at: float = NOW) -> ExecutorHeartbeat:
    return ExecutorHeartbeat(executor=name, queues=[q for qs, _ in pools for q in qs],
                             slots=sum(n for _, n in pools), at=at,
                             pools=[SlotPool(queues=qs, slots=n) for qs, n in pools])


def test_slots_of_a_queue_s_own_count_for_it_alone():
    beats = [beat("a", (["respond"], 2), (["code"], 2), (["default"], 4)),
             beat("b", (["respond"], 2), (["default"], 4))]
    assert slots_per_queue(beats, NOW, ttl=10) == {"respond": 4, "code": 2, "default": 8}


def test_a_shared_pool_counts_whole_for_each_of_its_queues():
    assert slots_per_queue([beat("a", (["respond"], 1), (["default", "code"], 4))], NOW, ttl=10) == {
        "respond": 1, "default": 4, "code": 4}


def test_a_heartbeat_without_pools_is_one_pool_shared_by_its_queues():
    old = ExecutorHeartbeat(executor="old", queues=["default", "respond"], slots=4, at=NOW)
    assert slots_per_queue([old], NOW, ttl=10) == {"default": 4, "respond": 4}


def test_an_executor_not_heard_from_within_the_ttl_adds_nothing():
    beats = [beat("fresh", (["default"], 2)), beat("stale", (["default"], 8), at=NOW - 11)]
    assert slots_per_queue(beats, NOW, ttl=10) == {"default": 2}


def test_a_reply_is_dispatched_while_background_work_fills_every_slot_it_has():
    sim = Sim(capacity=slots_per_queue([beat("a", (["respond"], 1), (["default"], 2))], NOW, ttl=10))
    sim.submit(*(T(name=f"bg{i}", type="sleep") for i in range(5)), request_id="backlog")
    sim.step()
    assert len(sim.take()) == 2  # the background slots, no more: the rest wait in the projection
    sim.submit(T(name="reply", type="respond", queue="respond"), request_id="chat")
    sim.step()
    [reply] = sim.take()
    assert sim.state.promises[reply.id].spec.name == "reply"
