"""The relay's publish as a write waits for it: `PubSubBus.send` of one message (what the relay
does after each single-event commit) to the local Pub/Sub Publisher API on 127.0.0.1 (gRPC, the
real `PublisherClient` through PUBSUB_EMULATOR_HOST), with the client library's default batch
latency (10 ms) and with the adapter's (`BATCH_LATENCY_SECONDS`), alternated round by round; one
ordering key per message, as the relay's subjects. Prints p50/p99 per setting and the ratio.

    .venv/bin/python bench/relay.py [--sends 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import _harness as h

from proveniq.adapters.gcp.pubsub import BATCH_LATENCY_SECONDS, PubSubBus
from proveniq.adapters.local.pubsub_server import LocalPubSubServer
from proveniq.ports import Message

LIBRARY_DEFAULT = 0.01  # google-cloud-pubsub's BatchSettings().max_latency
TOPIC = "ledger-events"


def one_round(latency: float, sends: int) -> list[float]:
    bus = PubSubBus(project="demo-proveniq", batch_latency=latency)
    try:
        bus.send(TOPIC, [Message(data=b"warm", ordering_key="warm")])
        out = []
        for i in range(sends):
            m = Message(data=b'{"seq": %d}' % i, attributes={"seq": str(i)}, ordering_key=f"s{i}")
            t = time.perf_counter()
            bus.send(TOPIC, [m])
            out.append(time.perf_counter() - t)
        return out
    finally:
        bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sends", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    received = [0]
    server = LocalPubSubServer(
        on_message=lambda *_: received.__setitem__(0, received[0] + 1), port=0, topics=[TOPIC]
    ).start()
    os.environ["PUBSUB_EMULATOR_HOST"] = server.address
    settings = {"library default": LIBRARY_DEFAULT, "adapter": BATCH_LATENCY_SECONDS}
    seen: dict[str, list[float]] = {name: [] for name in settings}
    try:
        for r in range(args.rounds):
            for name, latency in settings.items():
                h.log(f"round {r + 1}/{args.rounds}: {name} (max_latency {latency * 1000:g} ms)")
                seen[name] += one_round(latency, args.sends)
    finally:
        server.stop()
    print(
        f"PubSubBus.send of one message to the local Publisher API, {args.rounds} x "
        f"{args.sends} sends per setting, alternated; {received[0]:,} messages received"
    )
    p50 = {}
    for name, latency in settings.items():
        xs = sorted(seen[name])
        p50[name] = statistics.median(xs)
        print(
            f"  {name:16} max_latency {latency * 1000:5.1f} ms: p50 {p50[name] * 1000:6.2f} ms, "
            f"p99 {h.pct(xs, 0.99) * 1000:6.2f} ms"
        )
    ratio = p50["adapter"] / p50["library default"]
    print(f"  adapter / library default (p50): {ratio:.2f}")


if __name__ == "__main__":
    main()
