"""Produce SCADA rows to Kafka with an independent client (confluent-kafka), as
a plant's data pipeline would: key = organization id, one JSON row per message,
each machine's rows on one partition (machines spread round-robin over the
partitions in order of first appearance, so the layout is the same every run),
files interleaved line by line so every partition is in event-time order.

usage: produce_rows.py BROKERS TOPIC PARTITIONS MACHINE_COLUMNS_JSON PART FILE...
  MACHINE_COLUMNS_JSON  {"org": "machine column", ...}
  PART                  all | first | second  (which half of the rows)
The org of a file is its stem (`acme-heat.jsonl`). Creates the topic when
missing. Prints the number of rows produced.
"""

import json
import os
import sys

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main() -> None:
    brokers, topic, partitions, columns, part = sys.argv[1:6]
    files = sys.argv[6:]
    partitions = int(partitions)
    columns = json.loads(columns)
    admin = AdminClient({"bootstrap.servers": brokers})
    fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for f in fs.values():
        try:
            f.result(30)
        except Exception as e:  # an existing topic is fine
            if "already exists" not in str(e).lower() and "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 5})
    # Every file samples the same ticks: taking line i of each file in turn keeps
    # each partition in event-time order across orgs.
    orgs, rows = [], []
    for path in files:
        orgs.append(os.path.splitext(os.path.basename(path))[0])
        with open(path) as fh:
            rows.append([line.rstrip("\n") for line in fh if line.strip()])
    placement = {}
    for org, lines in zip(orgs, rows):
        for line in lines:
            placement.setdefault((org, json.loads(line).get(columns[org])), len(placement) % partitions)
    length = max(len(lines) for lines in rows)
    lo, hi = {"all": (0, length), "first": (0, length // 2), "second": (length // 2, length)}[part]
    n = 0
    for i in range(lo, hi):
        for org, lines in zip(orgs, rows):
            if i >= len(lines):
                continue
            line = lines[i]
            target = placement[(org, json.loads(line).get(columns[org]))]
            while True:
                try:
                    p.produce(topic, key=org.encode(), value=line.encode(), partition=target)
                    break
                except BufferError:
                    p.poll(0.1)
            n += 1
            p.poll(0)
    left = p.flush(120)
    if left:
        sys.exit(f"{left} rows not delivered")
    print(n)


if __name__ == "__main__":
    main()
