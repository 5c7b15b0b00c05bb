#!/usr/bin/env python3
"""A second, simple load client for make bench, independent of cmd/wsload.

It shares no code with wsload and uses other libraries (Python's websockets
and paho-mqtt), so that the QoS 0 throughput ratio of the gateway to direct
MQTT can be checked by a second harness.

    simpleload.py ws  --url ws://127.0.0.1:8080/ --broker 127.0.0.1:1883 --devices 10 --count 10000
    simpleload.py direct --broker 127.0.0.1:1883 --devices 10 --count 10000

Each of --devices publishers (WebSocket devices speaking done, or MQTT
clients) sends --count QoS 0 messages of about 200 bytes as fast as it can,
on {prefix}/{id}/load. One MQTT subscriber counts what arrives. Prints one
line: mode=... sent=N received=N msgs_per_s=R elapsed_s=S load_cpu_us_per_msg=C,
the rate being received / (last arrival - first send), C this process's CPU
time over the run per message received.
"""
import argparse
import asyncio
import json
import os
import threading
import time

import paho.mqtt.client as mqtt
import websockets

PAD = "x" * 150


def payload(seq):
    return json.dumps({"seq": seq, "pad": PAD}, separators=(",", ":"))


class Counter:
    def __init__(self, total):
        self.total = total
        self.received = 0
        self.last = 0.0
        self.done = threading.Event()
        self.lock = threading.Lock()

    def on_message(self, _client, _userdata, _msg):
        with self.lock:
            self.received += 1
            self.last = time.monotonic()
            if self.received >= self.total:
                self.done.set()


def mqtt_client(client_id):
    try:  # paho-mqtt 2
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id)
    except AttributeError:  # paho-mqtt 1
        return mqtt.Client(client_id=client_id)


def subscribe(host, port, prefix, counter):
    sub = mqtt_client("simpleload-sub")
    subscribed = threading.Event()
    sub.on_message = counter.on_message
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_connect = lambda c, *_: c.subscribe(prefix + "/+/load", qos=0)
    sub.connect(host, port)
    sub.loop_start()
    if not subscribed.wait(10):
        raise SystemExit("simpleload: no SUBACK from the broker")
    return sub


async def ws_device(url, device_id, count):
    async with websockets.connect(url, subprotocols=["done"], max_queue=None) as ws:
        await ws.send(json.dumps({"op": "hello", "id": device_id}))
        welcome = json.loads(await ws.recv())
        if welcome.get("op") != "welcome":
            raise SystemExit(f"simpleload: {device_id}: no welcome: {welcome}")
        for seq in range(1, count + 1):
            await ws.send('{"op":"pub","ch":"load","qos":0,"seq":%d,"data":%s}' % (seq, payload(seq)))
        await ws.send('{"op":"bye"}')
        try:
            await asyncio.wait_for(ws.wait_closed(), 10)
        except asyncio.TimeoutError:
            pass


async def ws_run(args):
    await asyncio.gather(*(ws_device(args.url, f"simple-{i}", args.count) for i in range(args.devices)))


def direct_run(args, host, port):
    def publisher(i):
        c = mqtt_client(f"simpleload-pub-{i}")
        c.connect(host, port)
        c.loop_start()
        topic = f"{args.prefix}/simple-{i}/load"
        for seq in range(1, args.count + 1):
            c.publish(topic, payload(seq), qos=0)
        c.loop_stop()
        c.disconnect()

    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(args.devices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["ws", "direct"])
    ap.add_argument("--url", default="ws://127.0.0.1:8080/")
    ap.add_argument("--broker", default="127.0.0.1:1883")
    ap.add_argument("--prefix", default="wsgate")
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--drain", type=float, default=3.0)
    args = ap.parse_args()
    host, port = args.broker.rsplit(":", 1)
    total = args.devices * args.count
    counter = Counter(total)
    sub = subscribe(host, int(port), args.prefix, counter)
    start = time.monotonic()
    cpu0 = os.times()
    if args.mode == "ws":
        asyncio.run(ws_run(args))
    else:
        direct_run(args, host, int(port))
    # Drain: until everything arrived, or nothing did for --drain seconds.
    while not counter.done.wait(0.1):
        with counter.lock:
            idle = time.monotonic() - (counter.last or start)
        if idle > args.drain:
            break
    cpu1 = os.times()
    sub.loop_stop()
    sub.disconnect()
    elapsed = (counter.last or time.monotonic()) - start
    rate = counter.received / elapsed if elapsed > 0 else 0
    # This process's CPU (all its threads) per message: what the load took
    # from a machine it shares with the gateway and the broker.
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    per_msg = cpu * 1e6 / counter.received if counter.received else 0
    print(f"mode={args.mode} devices={args.devices} sent={total} received={counter.received} "
          f"msgs_per_s={rate:.0f} elapsed_s={elapsed:.2f} load_cpu_us_per_msg={per_msg:.1f}")


if __name__ == "__main__":
    main()
