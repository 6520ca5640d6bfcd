#!/usr/bin/env bash
# Kill a real SST-2 teacher run with SIGKILL mid-epoch, resume it, and compare with an uninterrupted run.
#   bash benchmarks/sigkill_resume.sh [KILL_AT_STEP] [REFERENCE_RUN]
# REFERENCE_RUN: a finished run with the same flags (default runs/sst2-full, from the README's SST-2 command).
set -u
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
PY=${PY:-python}
KILL_AT=${1:-1300}
REF=${2:-runs/sst2-full}
OUT=runs/sst2-resume
rm -rf $OUT
start=$(date +%s)
$PY -m distill.teach --task sst2 --data-dir ../shared/data/glue_data --epochs 1 --output-dir $OUT > $OUT.1.log 2>&1 &
pid=$!
while ! grep -q "\"step\": $KILL_AT" $OUT/log.jsonl 2>/dev/null; do sleep 1; done
kill -9 $pid; wait $pid 2>/dev/null
echo "SIGKILL at step $KILL_AT after $(( $(date +%s) - start ))s; checkpoints: $(ls $OUT/checkpoints | tr '\n' ' ')"
$PY -m distill.teach --output-dir $OUT --resume > $OUT.2.log 2>&1 || { echo "resume failed: see $OUT.2.log"; exit 1; }
$PY - "$OUT" "$REF" <<'PY'
import json, sys
a, b = (json.load(open(f"{d}/metrics.json")) for d in sys.argv[1:3])
for split in a:
    for k, v in a[split].items():
        print(f"{split} {k}: resumed {v:.6f}  uninterrupted {b[split][k]:.6f}  diff {100 * (v - b[split][k]):+.2f} pt")
PY
