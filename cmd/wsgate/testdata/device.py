"""A `done` device written with Python's websockets package, as a device
author would write one. Usage: device.py URL DEVICE_ID COUNT

Offers two subprotocols in its preference order, says hello, publishes COUNT
QoS 1 readings and waits for every ack, answers one command, then says bye.
Prints one line per event for the Go test to check."""
import asyncio
import json
import sys

import websockets


async def main(url, device, count):
    async with websockets.connect(url, subprotocols=["unknown-proto", "done"]) as ws:
        print("subprotocol", ws.subprotocol, flush=True)
        await ws.send(json.dumps({"op": "hello", "id": device, "model": "python"}))
        welcome = json.loads(await ws.recv())
        print("welcome", welcome["op"], welcome["max"], flush=True)
        for seq in range(1, count + 1):
            await ws.send(json.dumps({"op": "pub", "ch": "telemetry", "data": {"n": seq}, "seq": seq}))
        acked = set()
        while len(acked) < count:
            msg = json.loads(await ws.recv())
            if msg["op"] == "ack":
                acked.add(msg["seq"])
        print("acked", len(acked), flush=True)
        print("ready", flush=True)
        cmd = json.loads(await ws.recv())
        print("cmd", cmd["name"], json.dumps(cmd["args"], sort_keys=True), flush=True)
        await ws.send(json.dumps({"op": "res", "id": cmd["id"], "ok": True, "data": {"done": 1}}))
        await ws.send(json.dumps({"op": "bye"}))
        try:
            await ws.recv()
        except websockets.ConnectionClosed as e:
            print("closed", e.code, flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
