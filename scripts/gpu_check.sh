#!/usr/bin/env bash
# The GPU checks, on a CUDA machine that has python3 with torch but no spaCy:
# unpack the carried cp312 spaCy stack (.gpu/site.txz), install bertflow and
# its plugins, write a random BERT of all-MiniLM-L6-v2's shape (from the
# config and tokenizer in .gpu/minilm), then run the GPU tests, the speed
# benchmark and a data-parallel training step on the GPU. Figures and logs go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
SITE=/tmp/site
if [ -f .gpu/site.txz ]; then mkdir -p "$SITE" && tar xJf .gpu/site.txz -C "$SITE"; fi
export PYTHONPATH=$SITE PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-deps --no-build-isolation --no-index --target "$SITE" . plugins/bertflow-* \
  >"$OUT/install.log" 2>&1 || { tail -30 "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, spacy, thinc, transformers, cupy; print('torch', torch.__version__, 'spacy', spacy.__version__, 'thinc', thinc.__version__, 'transformers', transformers.__version__, 'cupy', cupy.__version__)"
python3 - <<'PY'
import glob, shutil
from transformers import BertConfig, BertModel
BertModel(BertConfig.from_pretrained(".gpu/minilm")).save_pretrained("/tmp/minilm-random")
for f in glob.glob(".gpu/minilm/*token*") + glob.glob(".gpu/minilm/vocab.txt") + glob.glob(".gpu/minilm/special*"):
    shutil.copy(f, "/tmp/minilm-random")
PY
timeout ${TEST_TIMEOUT:-200} python3 -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
timeout ${SPEED_TIMEOUT:-300} python3 benchmarks/speed.py --gpu-id 0 --encoder /tmp/minilm-random --data .gpu/data \
  --repeats 2 --json "$OUT/speed_gpu.json" 2>&1 | tee "$OUT/speed_gpu.log" | tail -40
# the pipeline's own work on the GPU (transformer outputs replayed): µs per doc per head, calls per batch
timeout ${OVERHEAD_TIMEOUT:-200} python3 benchmarks/overhead.py --gpu-id 0 --encoder /tmp/minilm-random --data .gpu/data \
  --rounds 1 --repeats 2 --no-write --json "$OUT/overhead_gpu.json" 2>&1 | tee "$OUT/overhead_gpu.log" | tail -8
# data-parallel training: one rank's step on the GPU (nccl); one GPU can't time the all-reduce between GPUs
timeout ${DDP_TIMEOUT:-240} python3 benchmarks/ddp.py --gpu-id 0 --encoder /tmp/minilm-random --data .gpu/data/sst2 \
  --steps 20 2>&1 | tee "$OUT/ddp_gpu.log" | tail -12
# scale-out inference: one Ray worker on the GPU against the local engine (when the carried stack has ray)
# masked-LM continued pre-training on the GPU (projects/pretrain's config and sample), then the export
timeout ${MLM_TIMEOUT:-180} python3 -m bertflow train projects/pretrain/configs/pretrain.cfg --output /tmp/mlm-gpu \
  --paths.train projects/pretrain/assets/wiki_sample_train.txt --paths.dev projects/pretrain/assets/wiki_sample_heldout.txt \
  --paths.encoder /tmp/minilm-random --gpu-id 0 --training.max_steps 40 --training.eval_frequency 20 \
  --training.optimizer.learn_rate.total_steps 40 --training.optimizer.learn_rate.warmup_steps 4 \
  --components.encoder.frozen_steps 10 --components.encoder.model.mixed_precision true \
  2>&1 | tee "$OUT/mlm_gpu.log" | tail -8
python3 -m bertflow export-encoder /tmp/mlm-gpu/model-last /tmp/mlm-gpu-hf --force 2>&1 | tail -2

if python3 -c "import ray" 2>/dev/null; then
  timeout ${SCALE_TIMEOUT:-240} python3 benchmarks/scale.py --gpu-id 0 --encoder /tmp/minilm-random --data .gpu/data --texts 20000 \
    2>&1 | tee "$OUT/scale_gpu.log" | tail -10
else
  echo "ray not in the carried stack: scale-out GPU figures skipped (pip download 'ray[data]' into .gpu/site.txz)"
fi
cp benchmarks/BENCHMARKS.md "$OUT/" 2>/dev/null || true
