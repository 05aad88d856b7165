#!/usr/bin/env python3
"""The whole agent path on a machine with real NVIDIA GPUs, against a local server.

Starts `gigaspot serve` (fresh data, 10-second intervals) on loopback, registers the
machine from `gigaspot-agent inventory --gpu nvml`, places a bid with a power limit and a
core clock lock on every GPU, runs `gigaspot-agent run --gpu nvml --containers none`, and
shows what the server and `nvidia-smi` see: the limit applied and read back, the interval
served and charged, the reset to defaults once the bid is cancelled.

Usage: scripts/gpu-e2e.py <folder with gigaspot and gigaspot-agent> [power limit W] [core lock MHz]
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
POWER = int(sys.argv[2]) if len(sys.argv) > 2 else 450
CORE_LOCK = int(sys.argv[3]) if len(sys.argv) > 3 else 1410
BASE = "http://127.0.0.1:18080"
OPERATOR = "gs_operator_gpu_e2e_0123456789abcdef0123456789"
# `simulated:1xH100` rehearses the script where there is no GPU.
GPU = os.environ.get("GIGASPOT_E2E_GPU", "nvml")


def call(method, path, key=None, body=None):
    req = urllib.request.Request(BASE + path, method=method)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, data, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def smi():
    if GPU != "nvml":
        return "(simulated GPUs: no nvidia-smi)"
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,power.limit,power.draw,clocks.sm,clocks.mem",
         "--format=csv,noheader"], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()


def wait_for(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = check()
        except OSError:  # the server is still starting
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def main():
    inventory = json.loads(subprocess.run(
        [f"{BIN}/gigaspot-agent", "inventory", "--gpu", GPU],
        check=True, capture_output=True, text=True).stdout)
    print("inventory:", json.dumps(inventory))
    data = tempfile.mkdtemp()
    env = dict(os.environ, GIGASPOT_OPERATOR_KEY=OPERATOR, GIGASPOT_BILLING_INTERVAL_S="10")
    server = subprocess.Popen(
        [f"{BIN}/gigaspot", "serve", "--bind", "127.0.0.1:18080", "--data-dir", data],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    agent = None
    try:
        wait_for("the server", lambda: call("GET", "/api/v1/health"))
        host = call("POST", "/api/v1/accounts", body={"name": "host", "roles": ["host"]})["api_key"]
        gpus = [{"model": g["model"], "uuid": g["uuid"], "card_min_w": g["min_power_w"],
                 "card_max_w": g["max_power_w"], "ceiling_w": g["max_power_w"]}
                for g in inventory["gpus"]]
        machine = call("POST", "/api/v1/machines", host, {"gpus": gpus, "energy_price": 0.0})
        machine_id, token = machine["machine"]["id"], machine["agent_token"]
        client = call("POST", "/api/v1/accounts", body={"name": "client", "roles": ["client"]})
        call("POST", "/api/v1/deposits", OPERATOR,
             {"account": client["account"]["id"], "amount": 100.0, "reference": "gpu-e2e"})
        key = client["api_key"]
        agent = subprocess.Popen(
            [f"{BIN}/gigaspot-agent", "run", "--server", BASE, "--gpu", GPU,
             "--containers", "none", "--heartbeat-s", "1"],
            env=dict(os.environ, GIGASPOT_AGENT_TOKEN=token))
        wait_for("the agent", lambda: call("GET", f"/api/v1/machines/{machine_id}")["online"])
        print("before:", smi())
        oc = [{"pl": POWER, "core_lock": CORE_LOCK} for _ in gpus]
        bid = call("POST", "/api/v1/bids", key, {"machine": machine_id, "price": 50.0,
                                                 "image": "registry.example/app:1", "oc": oc})
        print(f"bid {bid['id']}: {POWER} W, core locked at {CORE_LOCK} MHz on every GPU")
        view = wait_for("the workload", lambda: (
            lambda v: v if v["agent"]["running_bid"] == bid["id"] else None)(
                call("GET", f"/api/v1/machines/{machine_id}")))
        print("agent reports:", json.dumps(view["agent"]))
        print("nvidia-smi while it runs:", smi())
        balance = call("GET", "/api/v1/balance", key)["balance"]
        wait_for("a charge", lambda: call("GET", "/api/v1/balance", key)["balance"] < balance, 30)
        print("charged: balance", balance, "->", call("GET", "/api/v1/balance", key)["balance"])
        call("DELETE", f"/api/v1/bids/{bid['id']}", key)
        default = [g["default_power_w"] for g in inventory["gpus"]]
        wait_for("the reset", lambda: [s["power_limit_w"] for s in call(
            "GET", f"/api/v1/machines/{machine_id}")["agent"]["applied_settings"]] == default, 40)
        print("after the bid was cancelled:", smi())
        print("gpu-e2e passed")
    finally:
        if agent:
            agent.terminate()
            agent.wait()
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
