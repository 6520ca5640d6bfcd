#!/usr/bin/env bash
# Behaviour unchanged across a refactor: run the same small teacher and students in two checkouts and
# compare what they wrote; then a student run SIGKILLed by OLD's code is resumed by NEW's and must end
# with the same weights as OLD's uninterrupted run.
# usage: .ci/same-results.sh OLD_CHECKOUT NEW_CHECKOUT OUT_DIR   (PY=python of a venv that has both's deps;
# ../shared/data beside OLD_CHECKOUT)
set -euo pipefail
old=$(realpath "$1"); new=$(realpath "$2"); out=$(realpath -m "$3")
PY=${PY:-$(realpath "$(dirname "$0")/../.venv/bin/python")}
D=$(realpath "$old/../shared/data/glue_data")
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for side in old new; do
  src=${!side}; r=$out/$side; rm -rf "$r"; mkdir -p "$r"
  ( cd "$src"
    $PY -m distill.teach --task sst2 --data-dir "$D" --epochs 1 --max-train-samples 600 --splits train dev \
        --save-steps 10 --output-dir "$r/teacher" > "$r/teach.log" 2>&1
    $PY -m distill.student --arch cnn --materials "$r/teacher" --epochs 2 --save-steps 10 --output-dir "$r/cnn" > "$r/student.log" 2>&1
    $PY -m distill.student --arch bilstm --materials "$r/teacher" --epochs 2 --beta 0.5 --save-steps 10 \
        --output-dir "$r/bilstm" >> "$r/student.log" 2>&1 )
  ( cd "$r"
    sha256sum teacher/materials/*/*.npy teacher/best/model.safetensors cnn/model/model.safetensors bilstm/model/model.safetensors
    python3 -c "import json; print('cnn dev', json.load(open('cnn/metrics.json'))['dev']); print('bilstm dev', json.load(open('bilstm/metrics.json'))['dev']); print('teacher', json.load(open('teacher/metrics.json')))" ) > "$r/summary.txt"
done
if diff "$out/old/summary.txt" "$out/new/summary.txt"; then
  echo "same results: $(wc -l < "$out/new/summary.txt") lines identical (every materials array, weight file and metric)"
else
  echo "the two checkouts wrote different results (diff above)"; exit 1
fi

# OLD's code dies by SIGKILL after 25 optimiser steps of the bilstm (a checkpoint at step 20); NEW resumes it.
cut=$out/cut; rm -rf "$cut"
( cd "$old" && $PY - "$out/old/teacher" "$cut" <<'PY' || true
import contextlib, os, signal, sys
import distill.distiller as d
from distill.student import StudentConfig, run
steps = 25
def progress(desc, total):
    class Bar:
        def advance(self, k=1, note=None):
            global steps
            if desc.startswith("epoch"):
                steps -= k
                if steps < 0:
                    os.kill(os.getpid(), signal.SIGKILL)
    return contextlib.nullcontext(Bar())
fit = d.fit
d.fit = lambda *a, **kw: fit(*a, **{**kw, "progress": progress})
run(StudentConfig(arch="bilstm", materials=sys.argv[1], output_dir=sys.argv[2], epochs=2, beta=0.5, save_steps=10, device="cpu"))
PY
)
( cd "$new" && $PY -m distill.student --arch bilstm --materials "$out/old/teacher" --epochs 2 --beta 0.5 --save-steps 10 \
    --output-dir "$cut" --resume > "$out/resume.log" 2>&1 )
a=$(sha256sum < "$out/old/bilstm/model/model.safetensors"); b=$(sha256sum < "$cut/model/model.safetensors")
if grep -q '"event": "resume"' "$cut/log.jsonl" && [ "$a" = "$b" ]; then
  echo "resumed by the new code after a SIGKILL in the old: the same weights as the old run in one go"
else
  echo "resume across the refactor: the weights differ (or nothing was resumed); see $out/resume.log"; exit 1
fi
