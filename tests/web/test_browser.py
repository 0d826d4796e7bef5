"""The dashboard in a real headless Chromium (Debian's), driven over the DevTools protocol."""

from __future__ import annotations

import json
import re

from schemas.commands import NewPromise

ROWS = "[...document.querySelectorAll('#promises tbody tr')]"


def table(page) -> dict[int, str]:
    return {int(k): v for k, v in page.eval(f"Object.fromEntries({ROWS}.map(r => [r.dataset.id, r.dataset.state]))").items()}


def test_the_page_renders_the_known_history_in_its_table(web, history, page, screenshots):
    page.goto(web.url + "/")
    page.wait_for(f"{ROWS}.length >= 5")
    shown = table(page)
    assert {pid: shown[pid] for pid in history.states()} == history.states()
    title = page.eval(f"document.querySelector('#promises tr[data-id=\"{history.join}\"] td:nth-child(5)').textContent")
    assert title == "join them"
    page.wait_for("document.querySelector('#executors tbody').textContent.includes('exec-cli-test')")
    row = page.eval("document.querySelector('#executors tr[data-id=\"exec-cli-test\"] td:nth-child(3)').textContent")
    assert re.fullmatch(r"default \d/4 · respond 0/1", row)  # busy/slots per queue
    page.wait_for("document.querySelector('#streams tr[data-stream=\"PROMISES\"]') !== null")
    assert page.eval("document.getElementById('live').dataset.state") == "live"
    page.screenshot(screenshots / "dashboard-list.png")


def test_filtering_by_state_leaves_only_those_rows(web, history, page):
    page.goto(web.url + "/")
    page.wait_for(f"{ROWS}.length >= 5")
    page.eval("(s => { s.value = 'failed'; s.dispatchEvent(new Event('change')); })"
              "(document.getElementById('f-state'))")
    shown = table(page)
    assert history.boom in shown and set(shown.values()) == {"failed"}


def test_a_joins_page_draws_its_dependency_graph(web, history, page, screenshots):
    page.goto(f"{web.url}/#/promise/{history.join}")
    page.wait_for("document.querySelectorAll('#graph svg g.node').length === 3")
    nodes = page.eval("[...document.querySelectorAll('#graph svg g.node')].map(g => ({id: +g.dataset.id,"
                      " state: g.dataset.state, focus: g.classList.contains('focus'),"
                      " x: g.transform.baseVal[0].matrix.e, y: g.transform.baseVal[0].matrix.f}))")
    by_id = {n["id"]: n for n in nodes}
    assert set(by_id) == {history.a, history.b, history.join}
    assert all(n["state"] == "succeeded" for n in nodes)
    assert [n["id"] for n in nodes if n["focus"]] == [history.join]
    # Parents on the left, in one column; the join to their right.
    assert by_id[history.a]["x"] == by_id[history.b]["x"] < by_id[history.join]["x"]
    assert by_id[history.a]["y"] != by_id[history.b]["y"]
    edges = page.eval("[...document.querySelectorAll('#graph svg path.edge')].map(p => [+p.dataset.from, +p.dataset.to])")
    assert sorted(map(tuple, edges)) == [(history.a, history.join), (history.b, history.join)]
    timeline = page.eval("[...document.querySelectorAll('#timeline tr')].map(r => r.dataset.type)")
    assert timeline == ["created", "dispatched", "started", "succeeded"]
    assert page.eval("document.querySelector('#detail .headline').textContent") == \
        f'#{history.join} echo "join them": succeeded on attempt 1'
    page.screenshot(screenshots / "dashboard-join.png")


def test_clicking_a_graph_node_opens_that_promise(web, history, page):
    page.goto(f"{web.url}/#/promise/{history.join}")
    page.wait_for("document.querySelectorAll('#graph svg g.node').length === 3")
    page.click(f'#graph g.node[data-id="{history.a}"] rect')
    page.wait_for(f"document.querySelector('#detail .headline').textContent.startsWith('#{history.a} ')")
    assert page.eval("location.hash") == f"#/promise/{history.a}"


def test_the_page_follows_a_promise_to_its_end_without_reloading(web, stack, client, history, page, screenshots):
    page.goto(web.url + "/")
    page.wait_for(f"{ROWS}.length >= 5 && document.getElementById('live').dataset.state === 'live'")
    page.eval("window.notReloaded = true")
    # Held running until the page has shown it so: a sleep could end unseen on a busy machine.
    pid = stack.call(client.submit(NewPromise(title="held until seen", type="held", input="followed")))["0"]
    page.eval(f"location.hash = '#/promise/{pid}'")
    page.wait_for(f"document.querySelector('#promises tr[data-id=\"{pid}\"]')?.dataset.state === 'running'")
    stack.release("followed")
    page.wait_for(f"document.querySelector('#promises tr[data-id=\"{pid}\"]')?.dataset.state === 'succeeded'",
                  timeout=15)
    page.wait_for("document.querySelector('#detail .headline')?.dataset.state === 'succeeded'")
    timeline = page.eval("[...document.querySelectorAll('#timeline tr')].map(r => r.dataset.type)")
    assert timeline[0] == "created" and "progress" in timeline and timeline[-1] == "succeeded"
    assert page.eval("window.notReloaded") is True
    counts = page.eval("Object.fromEntries([...document.querySelectorAll('#counts span')]"
                       ".map(s => [s.dataset.state, s.textContent]))")
    assert counts["succeeded"] == f"succeeded {web.get('/api/promises?limit=1')['counts']['succeeded']}"
    page.screenshot(screenshots / "dashboard-live.png")


def test_titles_are_shown_as_text_never_as_markup(web, stack, client, page):
    title = '<img src=x onerror="window.pwned=1"><b>bold</b>'
    pid = stack.call(client.submit(NewPromise(title=title, type="noop")))["0"]
    stack.call(client.wait([pid], timeout=10))
    page.goto(f"{web.url}/#/promise/{pid}")
    page.wait_for(f"document.querySelector('#detail .headline')?.textContent.startsWith('#{pid} ')")
    cell = f"document.querySelector('#promises tr[data-id=\"{pid}\"] td:nth-child(5)')"
    assert page.eval(f"{cell}.textContent") == title and page.eval(f"{cell}.children.length") == 0
    assert page.eval("window.pwned") is None
    assert json.dumps(title)[1:-1] in page.eval("document.querySelector('#detail .headline').textContent")
