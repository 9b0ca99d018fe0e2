#!/bin/sh
# Start one timely process of the worker StatefulSet.
#
# The pod's ordinal (the number after the last '-' of its hostname) is its timely
# process index (-p). The hostfile has one line per process, line i for process i:
# the peers' stable names from the headless Service
# (<statefulset>-<i>.<service>:<port>), and for this process itself
# 0.0.0.0:<port>, the address it binds (timely binds its own line and connects to
# the lower-numbered processes' lines, retrying until their names resolve).
#
# Environment: PROGNOS_WORKER_PROCESSES (= the StatefulSet's replicas),
# PROGNOS_WORKER_THREADS (timely -w, default 1), PROGNOS_WORKER_SERVICE (the
# headless Service), PROGNOS_TIMELY_PORT (default 2101), PROGNOS_HOSTFILE (default
# /tmp/prognos-hosts), PROGNOS_BIN (default prognos on PATH). Arguments are passed
# to `prognos worker` before the timely arguments.
set -eu

processes=${PROGNOS_WORKER_PROCESSES:?PROGNOS_WORKER_PROCESSES must be the StatefulSet replicas}
threads=${PROGNOS_WORKER_THREADS:-1}
service=${PROGNOS_WORKER_SERVICE:?PROGNOS_WORKER_SERVICE must name the headless Service}
port=${PROGNOS_TIMELY_PORT:-2101}
hostfile=${PROGNOS_HOSTFILE:-/tmp/prognos-hosts}
name=${HOSTNAME:?HOSTNAME is not set}

statefulset=${name%-*}
ordinal=${name##*-}
case $ordinal in
  '' | *[!0-9]*)
    echo "worker-entrypoint: hostname '$name' does not end in a StatefulSet ordinal" >&2
    exit 64 ;;
esac
case $processes in
  '' | *[!0-9]* | 0)
    echo "worker-entrypoint: PROGNOS_WORKER_PROCESSES='$processes' is not a positive count" >&2
    exit 64 ;;
esac
if [ "$ordinal" -ge "$processes" ]; then
  echo "worker-entrypoint: pod $name has ordinal $ordinal but the cluster has $processes processes" \
    "(set PROGNOS_WORKER_PROCESSES to the StatefulSet's replicas)" >&2
  exit 64
fi

tmp="$hostfile.tmp"
i=0
: > "$tmp"
while [ "$i" -lt "$processes" ]; do
  if [ "$i" -eq "$ordinal" ]; then
    echo "0.0.0.0:$port" >> "$tmp"
  else
    echo "$statefulset-$i.$service:$port" >> "$tmp"
  fi
  i=$((i + 1))
done
mv "$tmp" "$hostfile"

echo "worker-entrypoint: process $ordinal of $processes ($threads threads each), hostfile $hostfile" >&2
exec "${PROGNOS_BIN:-prognos}" worker "$@" -- -w "$threads" -n "$processes" -p "$ordinal" -h "$hostfile"
