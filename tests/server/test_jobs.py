"""Submit, run, poll, events, priorities, cancel, restarts — through the HTTP API."""

from __future__ import annotations

import time

import yaml

from server_helpers import WS, running, sample_workflow, wait_job
from strata.server.queue import HOST, JobQueue
from strata.store import Store


def test_submit_run_poll_and_fetch_output(client):
    r = client.post("/api/jobs", json=sample_workflow(0.5))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["events"] == f"/api/jobs/{job['id']}/events"
    done = wait_job(client, job["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["executed"] == ["src", "grade"]
    out = done["result"]["outputs"]["out.png"][0]
    png = client.get(out["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    run = client.get(f"/api/runs/{done['run_id']}").json()
    assert run["status"] == "ok" and [n["node_id"] for n in run["nodes"]] == ["src", "grade"]


def test_same_workflow_again_is_cached(client):
    first = wait_job(client, client.post("/api/jobs", json=sample_workflow(0.1)).json()["id"])
    second = wait_job(client, client.post("/api/jobs", json=sample_workflow(0.1)).json()["id"])
    assert first["result"]["executed"] == ["src", "grade"]
    assert second["result"]["cached"] == ["src", "grade"]
    assert first["result"]["outputs"] == second["result"]["outputs"]  # same bytes, same hash


def test_yaml_body_and_envelope_options(client):
    body = yaml.safe_dump({"workflow": sample_workflow(0.2), "priority": 5, "no_cache": True})
    r = client.post("/api/jobs", content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 202, r.text
    assert r.json()["priority"] == 5
    assert wait_job(client, r.json()["id"])["status"] == "succeeded"


def test_refused_bodies_queue_nothing(client):
    bad = sample_workflow()
    bad["nodes"][1]["params"] = {"stops": 99, "stopz": 1}
    r = client.post("/api/jobs", json=bad)
    assert r.status_code == 400
    issues = r.json()["issues"]
    assert {(i["node"], i["param"]) for i in issues} == {("grade", "stops"), ("grade", "stopz")}
    r = client.post("/api/jobs", content="name: x\nnodes: &a [*a]\n", headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400 and r.json()["error"] == "yaml_alias"
    r = client.post("/api/jobs", content="{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["detail"]
    assert client.get("/api/jobs").json()["jobs"] == []


def test_websocket_streams_events_with_previews(client):
    wf = sample_workflow(extra=[{"id": "slow", "op": "server_test.wait", "inputs": {"image": "grade"},
                                 "params": {"steps": 3, "step_s": 0.01}}])
    job_id = client.post("/api/jobs", json=wf).json()["id"]
    events = []
    with client.websocket_connect(f"{WS}/api/jobs/{job_id}/events") as ws:
        while True:
            events.append(ws.receive_json())
            if events[-1]["event"] == "job_finished":
                break
    kinds = [e["event"] for e in events]
    assert kinds[0] == "job_queued" and kinds[-1] == "job_finished"
    assert kinds.index("run_started") < kinds.index("node_progress") < kinds.index("run_finished")
    progress = [e for e in events if e["event"] == "node_progress"]
    assert [(p["step"], p["total"]) for p in progress] == [(1, 3), (2, 3), (3, 3)]
    assert progress[-1]["preview"].startswith("data:image/png;base64,")  # (a late joiner gets only the newest)
    assert all(e["job"] == job_id for e in events)
    # a client connecting after the end still gets the whole story and the end
    with client.websocket_connect(f"{WS}/api/jobs/{job_id}/events") as ws:
        replay = [ws.receive_json() for _ in range(len(events))]
    assert [e["event"] for e in replay] == kinds


def test_priorities_and_persistence_across_restart(make_client, store_dir):
    with running(make_client, start_workers=False) as api_only:
        ids = {p: api_only.post("/api/jobs", json=sample_workflow(p / 10), params={"priority": p}).json()["id"]
               for p in (0, 9, 3)}
        assert api_only.get(f"/api/jobs/{ids[0]}").json()["position"] == 2
    with running(make_client) as server:  # a new app on the same store: the queued jobs run
        jobs = {p: wait_job(server, i) for p, i in ids.items()}
    assert all(j["status"] == "succeeded" and j["attempts"] == 1 for j in jobs.values())
    assert jobs[9]["started"] < jobs[3]["started"] < jobs[0]["started"]


def test_job_of_a_dead_server_is_requeued_and_runs_once(make_client, store_dir):
    with running(make_client, start_workers=False) as api_only:
        job_id = api_only.post("/api/jobs", json=sample_workflow(0.7)).json()["id"]
    queue = JobQueue(Store(store_dir))
    claimed = queue.claim(f"{HOST}:999999999:gone:0", "20260101-000000-dead")  # a worker whose process died
    assert claimed is not None and claimed.id == job_id
    queue.store.db.conn.execute("INSERT INTO runs (id, name, created, status, workflow, workflow_hash, seed) "
                                "VALUES ('20260101-000000-dead', 't', 0, 'running', '{}', '', 0)")
    with running(make_client) as server:
        job = wait_job(server, job_id)
        assert job["status"] == "succeeded" and job["attempts"] == 2
        assert server.get("/api/runs/20260101-000000-dead").json()["status"] == "interrupted"
        runs = [r for r in server.get("/api/runs").json()["runs"] if r["status"] == "ok"]
        assert len(runs) == 1  # ran to completion exactly once


def test_job_that_keeps_killing_the_server_is_failed(make_client, store_dir):
    with running(make_client, start_workers=False) as api_only:
        job_id = api_only.post("/api/jobs", json=sample_workflow(0.6)).json()["id"]
    queue = JobQueue(Store(store_dir))
    for attempt in range(3):
        queue.claim(f"{HOST}:999999999:gone:{attempt}", f"run-{attempt}")
        queue.recover(stale_after_s=30, max_attempts=3)
    job = queue.get(job_id)
    assert job.status == "failed" and "3 times" in job.error


def test_cancel_queued_job_never_runs(make_client):
    with running(make_client, start_workers=False) as api_only:
        job_id = api_only.post("/api/jobs", json=sample_workflow(0.9)).json()["id"]
        r = api_only.post(f"/api/jobs/{job_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        again = api_only.post(f"/api/jobs/{job_id}/cancel")
        assert again.status_code == 409 and "already ended" in again.json()["detail"]
    with running(make_client) as server:
        time.sleep(0.2)
        job = server.get(f"/api/jobs/{job_id}").json()
        assert job["status"] == "cancelled" and job["run_id"] is None and job["started"] is None


def test_cancel_running_job_stops_between_steps(client):
    wf = sample_workflow(0.33, extra=[{"id": "slow", "op": "server_test.wait", "inputs": {"image": "grade"},
                                       "params": {"steps": 400, "step_s": 0.01}}])
    job_id = client.post("/api/jobs", json=wf).json()["id"]
    with client.websocket_connect(f"{WS}/api/jobs/{job_id}/events") as ws:
        while ws.receive_json()["event"] != "node_progress":  # the slow node is under way
            pass
        t0 = time.monotonic()
        assert client.post(f"/api/jobs/{job_id}/cancel").json()["cancel_requested"] is True
        while (last := ws.receive_json())["event"] != "job_finished":
            pass
    assert last["status"] == "cancelled" and time.monotonic() - t0 < 1.0  # not the 4 s the node would take
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and "cancelled while running" in job["error"]
    nodes = {n["node_id"]: n["status"] for n in client.get(f"/api/runs/{job['run_id']}/nodes").json()["nodes"]}
    assert nodes == {"src": "executed", "grade": "executed", "slow": "interrupted"}
    assert client.get(f"/api/runs/{job['run_id']}").json()["status"] == "interrupted"


def test_only_the_owner_may_cancel(make_client):
    other = "another-token-0123456789"
    c = make_client(token=["test-token-0123456789abcdef", other], start_workers=False)
    job_id = c.post("/api/jobs", json=sample_workflow(), headers={"Authorization": f"Bearer {other}"}).json()["id"]
    r = c.post(f"/api/jobs/{job_id}/cancel", headers={"Authorization": "Bearer test-token-0123456789abcdef"})
    assert r.status_code == 403 and r.json()["error"] == "not_your_job"


def test_idempotency_key_returns_the_first_job(make_client):
    c = make_client(start_workers=False)
    a = c.post("/api/jobs", json=sample_workflow(), headers={"Idempotency-Key": "k1"}).json()
    b = c.post("/api/jobs", json=sample_workflow(), headers={"Idempotency-Key": "k1"}).json()
    assert a["id"] == b["id"] and len(c.get("/api/jobs").json()["jobs"]) == 1


def test_failed_node_fails_the_job_with_its_message(client):
    wf = sample_workflow(extra=[{"id": "crop", "op": "edit.crop", "inputs": {"image": "grade"},
                                 "params": {"left": 100, "width": 4, "height": 4}}])  # outside the 8×8 image
    job = wait_job(client, client.post("/api/jobs", json=wf).json()["id"])
    assert job["status"] == "failed" and "node 'crop'" in job["error"]
    assert job["result"]["failed"].keys() == {"crop"} and job["result"]["executed"] == ["src", "grade"]


def test_asset_cache_headers_and_not_modified(client, store_dir):
    done = wait_job(client, client.post("/api/jobs", json=sample_workflow(0.4)).json()["id"])
    value_id = done["result"]["node_outputs"]["grade"]["image"]
    r = client.get(f"/api/assets/{value_id}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["etag"] == f'"{value_id}.png"'
    again = client.get(f"/api/assets/{value_id}", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    raw = client.get(f"/api/assets/{value_id}", params={"format": "raw"})
    assert raw.headers["etag"] == f'"{value_id}.raw"' and raw.content.startswith(b"\x93NUMPY")
    info = client.get(f"/api/assets/{value_id}/info").json()
    assert info["kind"] == "image"
    tree = client.get(f"/api/assets/{value_id}/lineage").json()
    assert tree["op"] == "enhance.exposure" and tree["inputs"]["image"][0]["op"] == "server_test.solid"
    assert client.get(f"/api/assets/{'0' * 64}").status_code == 404


def test_op_schemas(client):
    ops = {o["op"]: o for o in client.get("/api/ops").json()["ops"]}
    stops = ops["enhance.exposure"]["params"]["properties"]["stops"]
    assert (stops["minimum"], stops["maximum"]) == (-10, 10)
    assert ops["enhance.exposure"]["inputs"] == {"image": {"type": "Image", "optional": False}}
    assert client.get("/api/ops/enhance.exposure").json() == ops["enhance.exposure"]
    r = client.get("/api/ops/enhance.exposur")
    assert r.status_code == 404 and "enhance.exposure" in r.json()["detail"]


def test_runs_list_and_diff(client):
    a = wait_job(client, client.post("/api/jobs", json=sample_workflow(0.1)).json()["id"])["run_id"]
    b = wait_job(client, client.post("/api/jobs", json=sample_workflow(0.2)).json()["id"])["run_id"]
    assert [r["id"] for r in client.get("/api/runs").json()["runs"]][:2] == [b, a]
    diff = client.get("/api/runs/diff", params={"a": a, "b": b}).json()
    assert diff["changed_params"] == {"grade": {"stops": [0.1, 0.2]}} and diff["reused"] == ["src"]
    assert client.get("/api/runs/nope").status_code == 404


def test_docs_work_offline(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in page.text and "cdn" not in page.text
    assert client.get("/docs/static/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/jobs" in spec["paths"] and "/sdapi/v1/txt2img" in spec["paths"]


def test_health(client):
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["auth"] == "loopback" and body["workers"] == 1


def test_replay_keeps_only_the_newest_preview():
    from strata.server.hub import EventHub

    hub = EventHub()
    for step in (1, 2, 3):
        hub.publish("j", {"event": "node_progress", "step": step, "total": 3, "preview": f"data:{step}"})
    kept = list(hub._recent["j"])
    assert [m.get("preview") for m in kept] == [None, None, "data:3"]


def test_graceful_stop_puts_the_running_job_back(make_client):
    slow = sample_workflow(0.44, extra=[{"id": "slow", "op": "server_test.wait", "inputs": {"image": "grade"},
                                         "params": {"steps": 100, "step_s": 0.01}}])
    with running(make_client) as server:
        job_id = server.post("/api/jobs", json=slow).json()["id"]
        with server.websocket_connect(f"{WS}/api/jobs/{job_id}/events") as ws:
            while ws.receive_json()["event"] != "node_progress":
                pass
    # the app stopped mid-node: the job is queued again, its attempt not counted
    with running(make_client, start_workers=False) as api_only:
        job = api_only.get(f"/api/jobs/{job_id}").json()
        assert job["status"] == "queued" and job["attempts"] == 0
    with running(make_client) as server:
        job = wait_job(server, job_id, timeout_s=15)
        assert job["status"] == "succeeded" and job["attempts"] == 1
        assert job["result"]["cached"] == ["src", "grade"]  # resumed from what had finished


def test_several_workers_never_share_a_job(make_client):
    with running(make_client, start_workers=False) as api_only:
        ids = [api_only.post("/api/jobs", json=sample_workflow(i / 50)).json()["id"] for i in range(12)]
    c = make_client(workers=3)  # three workers race for twelve queued jobs
    jobs = [wait_job(c, i) for i in ids]
    assert all(j["status"] == "succeeded" and j["attempts"] == 1 for j in jobs)
    assert len({j["run_id"] for j in jobs}) == 12
    workers = {r["worker"] for r in c.app.state.strata.store.db.query("SELECT worker FROM server_jobs")}
    assert len(workers) >= 2  # the work was actually spread


def test_studio_page_and_files(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script type="module" src="/studio/studio.js">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing loaded from elsewhere
    js = client.get("/studio/studio.js")
    assert js.status_code == 200 and "followJob" in js.text and "https://" not in js.text
    assert client.get("/studio/studio.css").status_code == 200


def test_rerun_with_changes_records_the_parent(client):
    first = wait_job(client, client.post("/api/jobs", json=sample_workflow(0.15)).json()["id"])
    run = client.get(f"/api/runs/{first['run_id']}").json()
    run["workflow"]["nodes"][1]["params"]["stops"] = 0.35
    r = client.post("/api/jobs", json={"workflow": run["workflow"], "parent_run": first["run_id"][:15]})
    second = wait_job(client, r.json()["id"])
    assert second["result"]["cached"] == ["src"] and second["result"]["executed"] == ["grade"]
    assert client.get(f"/api/runs/{second['run_id']}").json()["parent"] == first["run_id"]
    bad = client.post("/api/jobs", json={"workflow": run["workflow"], "parent_run": "nope"})
    assert bad.status_code == 400 and bad.json()["error"] == "unknown_run"


def test_global_event_stream(client):
    with client.websocket_connect(f"{WS}/api/events") as ws:
        job_id = client.post("/api/jobs", json=sample_workflow(0.77)).json()["id"]
        seen = []
        while not seen or seen[-1]["event"] != "job_finished":
            seen.append(ws.receive_json())
    assert {e["job"] for e in seen} == {job_id} and seen[0]["event"] == "job_queued"


def test_output_files_support_ranges_and_verify(client):
    done = wait_job(client, client.post("/api/jobs", json=sample_workflow(0.8)).json()["id"])
    url = done["result"]["outputs"]["out.png"][0]["url"]
    whole = client.get(url).content
    part = client.get(url, headers={"Range": "bytes=0-7"})
    assert part.status_code == 206 and part.content == whole[:8] == b"\x89PNG\r\n\x1a\n"
    report = client.post("/api/verify", content=whole).json()
    assert report["kind"] == "image" and report["verdict"] and "path" not in report
    assert report["provenance"]["op"] == "enhance.exposure"
