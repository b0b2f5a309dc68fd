#!/bin/sh
# Runs every target for 620 s; logs to fuzz/logs/<target>.log. PARALLEL=1 runs all five at
# once (each then gets a share of the cores), otherwise one after another.
cd "$(dirname "$0")"
mkdir -p logs
# corpus/<target> grows here (git-ignored); the kept inputs in tests/fuzz-corpus seed it.
run() {
  mkdir -p "corpus/$1"
  RUSTC_BOOTSTRAP=1 nice cargo fuzz run -O "$1" "corpus/$1" "../tests/fuzz-corpus/$1" -- -max_total_time=605 -print_final_stats=1 > "logs/$1.log" 2>&1
  echo "$1 exit $?" >> logs/summary
}
for t in sse usage jwt failure store; do
  if [ -n "$PARALLEL" ]; then run "$t" & else run "$t"; fi
done
wait
