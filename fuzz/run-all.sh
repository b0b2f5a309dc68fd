#!/bin/sh
# Runs every target for 610 s, two at a time; logs to fuzz/logs/<target>.log.
cd "$(dirname "$0")"
mkdir -p logs
run() { RUSTC_BOOTSTRAP=1 nice cargo fuzz run -O "$1" "corpus/$1" -- -max_total_time=610 -print_final_stats=1 > "logs/$1.log" 2>&1; echo "$1 exit $?" >> logs/summary; }
run sse & run usage & wait
run jwt & run failure & wait
run store
