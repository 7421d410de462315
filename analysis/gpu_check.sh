#!/usr/bin/env bash
# The GPU checks, as one command (issue 26): under 10 minutes on one GPU. Without a GPU it prints one line
# and exits 0. Run from the repository root with the project installed (the README's test command).
#
#   bash analysis/gpu_check.sh [OUT]      # OUT: where the logs go (default analysis/results/gpu)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check"
  exit 0
fi
OUT=${1:-analysis/results/gpu}
mkdir -p "$OUT"
export RAY_USAGE_STATS_ENABLED=0
status=0
step() { echo; echo "== $1 ($(date -u +%H:%M:%S))"; }
{
  step "device"
  "$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.device_count(), 'device(s)')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

  step "1. the tests that use CUDA when present (pytest -m gpu, and the export/train tests on the GPU)"
  timeout 300 "$PY" -m pytest -q -m gpu tests/ -rs || status=1

  step "2. a one-round search with two trials sharing the GPU (--gpus-per-trial 0.5)"
  rm -rf "$OUT/search-shared"
  timeout 300 hebbnas search --budget 1.5e9 --smoke --strategy random --trials 2 --concurrency 2 \
    --gpus-per-trial 0.5 --cpus-per-trial 1 --out "$OUT/search-shared" || status=1
  "$PY" - "$OUT/search-shared" <<'PYEOF' || status=1
import sys, pandas as pd
df = pd.read_csv(f"{sys.argv[1]}/trials.csv", dtype={"trial_id": str})
starts = df["started"].sort_values().tolist()
print(f"trials {len(df)}, statuses {sorted(set(df['status']))}, started {starts[-1] - starts[0]:.1f} s apart "
      "(two trials on one GPU run at once)")
PYEOF

  step "3. training images/s: the width proxy (1/4 width @128) and the full network at 224 px"
  timeout 300 "$PY" - <<'PYEOF' || status=1
import time, torch, torch.nn.functional as F
from hebbnas.derive import fit
from hebbnas.model import build
from hebbnas.topology import get_topology
base = fit(get_topology("googlenet").with_classes(10), 3e8, (3, 224, 224), multiple=8)
full = fit(get_topology("googlenet").with_classes(10), 1.5e9, (3, 224, 224), multiple=8)
for label, t, res, batch in (("width proxy 1/4 @128, 3e8", base.narrowed(0.25), 128, 64),
                             ("full width @224, 1.5e9", full, 224, 64)):
    m = build(t).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), fused=True)
    x = torch.randn(batch, 3, res, res, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device="cuda")
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, aux = m.forward_with_aux(x)
            loss = F.cross_entropy(out.float(), y) + 0.3 * sum(F.cross_entropy(a.float(), y) for a in aux)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    for _ in range(5): step()
    torch.cuda.synchronize(); t0 = time.perf_counter(); n = 0
    while time.perf_counter() - t0 < 10: step(); n += 1
    torch.cuda.synchronize()
    print(f"{label}: {n * batch / (time.perf_counter() - t0):,.0f} training images/s (batch {batch}, bf16, channels_last)")
PYEOF

  step "4. one unit of the converged protocol at full width and 224 px (paper, seed 0)"
  timeout 420 "$PY" analysis/converged.py --pilot --width 1 --resolution 224 --device auto --out "$OUT/converged-full" \
    --cache "$OUT/converged-full/cache" || status=1
} 2>&1 | tee "$OUT/gpu_check.log"
echo "gpu_check: done, status $status, log $OUT/gpu_check.log"
exit $status
