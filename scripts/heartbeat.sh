#!/usr/bin/env bash
# Run a command and print a line every 20 s while it runs, so a log shows a long silent step (pip's
# "Installing collected packages") is still moving. Exits with the command's status.
set -u
"$@" &
pid=$!
start=$SECONDS
while kill -0 "$pid" 2>/dev/null; do
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    sleep 2
    kill -0 "$pid" 2>/dev/null || break 2
  done
  echo "setup: still working ($((SECONDS - start)) s): $*"
done
wait "$pid"
