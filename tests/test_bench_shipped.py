"""The shipped-stack bench's pure parts: the shapes it drives through `valor plan` and the ports it may use."""

from bench.shipped import free_bases, plan_file, shape_plans
from valor.planfile import read_plan

MAKE_UP_PORTS = {4222, 4223, 4224, 6222, 6223, 6224, 8222, 8223, 8224, 9100, 9101, 9110, 9111, 9120, 9130}


def test_each_shape_splits_into_plan_files_the_cli_accepts_with_every_dependency_inside_its_file():
    for shape, promises, per_unit in (("independent", 300, 1), ("chain3", 300, 3), ("fanout10", 297, 11)):
        plans = shape_plans(shape, promises, files=7)
        assert sum(len(p) for p in plans) == promises and len(plans) == 7
        for tasks in plans:
            parsed = read_plan(plan_file(tasks))
            names = [t.name for t in parsed]
            assert len(set(names)) == len(names)
            assert all(set(t.after) <= set(names) for t in parsed)
            assert sum(1 for t in parsed if not any(t.name in u.after for u in parsed)) == len(parsed) // per_unit


def test_a_chain_keeps_its_order_and_a_fanout_joins_all_ten():
    [chain] = shape_plans("chain3", 3, files=1)
    assert [(t.name, t.after) for t in chain] == [("a0", []), ("b0", ["a0"]), ("c0", ["b0"])]
    [fan] = shape_plans("fanout10", 11, files=1)
    assert fan[-1].after == [f"f{i}0" for i in range(10)]


def test_the_bench_never_takes_the_ports_of_a_running_make_up():
    bases = free_bases()
    ports = {bases[k] + i for k in ("nats", "cluster", "monitor") for i in range(3)}
    ports |= {bases["metrics"] + d for d in (0, 1, 10, 11, 20, 30)}
    assert not ports & MAKE_UP_PORTS and bases["metrics"] % 10 == 0
