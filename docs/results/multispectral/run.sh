#!/usr/bin/env bash
# Issue 23, item 5: does adaptation pay on a multispectral float32 scene with -99999 nodata?
# From the repository root:  bash docs/results/multispectral/run.sh [OUT]   (OUT: runs/multispectral)
# Env: FOLDS (default "1,2,3,4"), TASKS (test tasks per shot and fold, default 4),
#      MAP_FOLD (the fold whose model maps the whole scene, default 1), SHOTS (support tiles, 5),
#      CONFIG (default configs/multispectral.yaml), BENCH_ARGS (more bench flags, e.g. --threads 1),
#      SKIP_BENCH=1 (steps 3-4 only, on OUT/case and OUT/bench of an earlier or running run:
#      the bundles are written fold by fold).
set -euo pipefail
OUT=${1:-runs/multispectral}
FOLDS=${FOLDS:-1,2,3,4}
TASKS=${TASKS:-4}
MAP_FOLD=${MAP_FOLD:-1}
SHOTS=${SHOTS:-5}
CONFIG=${CONFIG:-configs/multispectral.yaml}
HERE=docs/results/multispectral
mkdir -p "$OUT"
t0=$(date +%s)

if [ "${SKIP_BENCH:-0}" != 1 ]; then
# 1. the case: 5-band float32 scene at 28.5 m, -99999 around the footprint, values 1..7,
#    cut into four quadrant regions of 64-px tiles
landcover data scene --out "$OUT/case" --force
landcover data inspect "$OUT/case/regions"

# 2. the tile benchmark: leave one quadrant out, every method, MAML++ models exported
landcover bench regions "$OUT/case/regions" --config "$CONFIG" --seeds 0 \
  --only-folds "$FOLDS" --tasks "$TASKS" --tuning-tasks 8 --export --no-progress \
  --out "$OUT/bench" ${BENCH_ARGS:-} \
  | tee "$OUT/bench.txt"
fi
t1=$(date +%s)

# 3. the held-out quadrant of MAP_FOLD: SHOTS of its tiles (those with most valid pixels) as
#    the analyst's labeled support; adapt (guarded) and map the whole scene, and the same with
#    0 steps (Proto-MAML: the support's prototypes in the classifier, no gradient step; other
#    learners: the meta-model); a Proto-MAML model that was never adapted must be refused
HELD=$(python - "$OUT/bench/partial_folds.json" "$MAP_FOLD" <<'PY'
import json, sys
folds = json.load(open(sys.argv[1]))
print(next(f["test"][0] for f in folds if f["fold"] == int(sys.argv[2]) - 1))
PY
)
rm -rf "$OUT/support" && mkdir -p "$OUT/support/images" "$OUT/support/masks"
python - "$OUT/case/regions/$HELD" "$SHOTS" <<'PY' | while read -r f; do
import sys
from pathlib import Path
import rasterio
folder, k = Path(sys.argv[1]), int(sys.argv[2])
def valid(p):
    with rasterio.open(p) as s:
        return int((s.read(1) != s.nodata).sum())
tiles = sorted((folder / "masks").glob("*.tif"), key=lambda p: (-valid(p), p.name))
print("\n".join(p.name for p in tiles[:k]))
PY
  cp "$OUT/case/regions/$HELD/images/$f" "$OUT/support/images/"
  cp "$OUT/case/regions/$HELD/masks/$f" "$OUT/support/masks/"
done
cp "$OUT/case/classes.yaml" "$OUT/support/"
BUNDLE="$OUT/bench/bundles/seed0_fold${MAP_FOLD}.bundle"
landcover adapt "$BUNDLE" --support "$OUT/support" -o "$OUT/adapted.bundle" --json \
  | tee "$OUT/adapt.json"
landcover adapt "$BUNDLE" --support "$OUT/support" --steps 0 --no-guard -o "$OUT/zero_steps.bundle" \
  --json > "$OUT/zero_steps.json"
landcover predict "$OUT/adapted.bundle" "$OUT/case/scene.tif" "$OUT/map_adapted.tif" --quiet --json \
  | tee "$OUT/predict.json"
landcover predict "$OUT/zero_steps.bundle" "$OUT/case/scene.tif" "$OUT/map_zero_steps.tif" --quiet
ZERO_LABEL=unadapted
if grep -q "proto_init: true" "$CONFIG"; then
  ZERO_LABEL="prototypes (0 steps)"
  # the meta bundle itself (no support): predict refuses it, and says why
  if landcover predict "$BUNDLE" "$OUT/case/scene.tif" "$OUT/map_meta.tif" --quiet \
    > "$OUT/meta_predict.txt" 2>&1; then
    echo "predict mapped a Proto-MAML model that was never adapted"; exit 1
  fi
  grep -q "proto_init" "$OUT/meta_predict.txt"
fi
t2=$(date +%s)

# 4. score the maps over the reference's valid pixels; scene | reference | maps
python "$HERE/score_map.py" --scene "$OUT/case/scene.tif" --reference "$OUT/case/reference.tif" \
  --map "adapted=$OUT/map_adapted.tif" --map "$ZERO_LABEL=$OUT/map_zero_steps.tif" \
  --held-out "$HELD" --support "$OUT/support" --out "$OUT"
echo "{\"bench_s\": $((t1 - t0)), \"adapt_predict_s\": $((t2 - t1)), \"total_s\": $(( $(date +%s) - t0 ))}" \
  | tee "$OUT/wall.json"
