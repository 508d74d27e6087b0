#!/usr/bin/env bash
# One GPU session's work for issue 7, run on the GPU host from the repository root under
# run-gpu.sh (see scripts/gpu-pack.sh --data):
#   bash .gpu/run-gpu.sh .gpu bash .gpu/train-run.sh
# 1. bench:gpu (below); 2. imports the dataset; 3. trains configs/resnet18.json on webgpu with the
#    fastest variant, float16 weights, until DEADLINE_S (seconds after start); 4. evaluates the
#    reloaded model, also with flip TTA; 5. optionally PyTorch's training of the same recipe
#    (REFERENCE_TRAIN) and more benchmarks (BENCH_AFTER), both below. Results go to $OUT (at most 8 files come back): bench.tar.gz (the
#    bench-*.json), run.log, results.tar.gz (model folder without checkpoint, eval output),
#    weights.part-aa/ab (the weight file split under 16 MiB). The host has no fonts: curves.png
#    comes back without text; render it again from curves.svg (sharp) where fonts exist.
# Epochs: as many as fit before the deadline (cifar train --time-limit; the one-cycle schedule fitted
#   to them), at most MAX_EPOCHS (default the config's, 50), or EPOCHS=N
#   for the recipe's schedule of N epochs (50 in configs/resnet18.json) stopped by SIGTERM at the
#   deadline with a checkpoint; RESUME=1 in a second call on the same, still warm machine (its
#   $MODEL_OUT/checkpoint and /tmp/data are still there) continues it: no benchmarks, then
#   train --resume until this call's deadline, and the evaluation once the run is complete.
#   The 50 epochs of 2026-11-27 took 9 min 23 s of training (10.5 min in all) on the H100 with
#   scalar loads, in two calls; with vec4 loads (a step 19% shorter) one 600 s call should hold them.
# CONFIG=configs/NAME.json trains another recipe (default configs/resnet18.json, cutout 16 since
#   2026-11-27; TRAIN_FLAGS="--cutout 0" for the recipe of the 91.0% run);
#   TRAIN_FLAGS adds cifar train flags over it (e.g. "--model resnet18-w4"); TRAIN_FLAGS=best-reference
#   takes them from the best PyTorch recipe an earlier call on this warm machine finished
#   (REFERENCE_TRAIN below keeps each run in /tmp/reference-runs; best-reference.mjs picks the best
#   final test accuracy among the runs that finished their epochs; none: the config as it is).
#   MODEL_OUT names the
#   model folder (default models/resnet18; with RESUME=1 give the same one).
# BENCH=0 skips the benchmarks: the default kernels train (on the H100 of 2026-11-27, tenth
#   session: 9,228 img/s a step at batch 256 with the float16 tensor cores, 6,401 in float32).
# BENCH=quick: the default kernels with PyTorch's reference in the same call (since the tenth
#   session of 2026-11-27 the default is CIFAR_WEBGPU_MATMUL=auto: float16 tensor cores where the
#   adapter offers them and they pass their start-up check), then float32 GEMMs alone
#   (CIFAR_WEBGPU_MATMUL=f32, the default before), then float16 GEMMs
#   on the tensor cores asked for (CIFAR_WEBGPU_MATMUL=tensor-cores, 16 and 32 deep; counted only
#   if the device really ran them) and Dawn's disable_robustness toggle
#   (no bounds clamping in shaders; 16% faster than without on the scalar kernels of
#   2026-11-26), at batch 256 (about two minutes); trains with the fastest. The
#   toggle run also asks for vulkan_enable_f16_on_nvidia and allow_unsafe_apis, so its JSON says
#   whether the adapter offers shader-f16 and tensor-core (subgroup matrix) configurations. A
#   variant whose kernels disagree with tfjs' on the device (beyond float16's rounding for
#   tensor-cores) is never picked. The default and the toggle run profile a step. Sixth, the
#   default's step with cutout 16 (bench:gpu --cutout 16), never picked: the 2026-11-27 cutout
#   run's epochs were 10.2-17.3 s where the run without cutout's were 10.8-11.2. Seventh, the
#   default with a new bind group per dispatch (--fresh-bind-groups, tfjs' way, before
#   2026-11-27's fourth session; never picked); eighth, the CPU side of a step alone on this host (Dawn's null
#   backend, batch 16, no shader runs: its 256 row is absent, so it is never picked).
# BENCH_ONLY="default f32 tensor-cores-32" keeps only the variants named (any of the table below);
#   "ema" measures the default's step with the weight average of cifar train --ema 0.999, "mix" with
#   mixed batches (bench:gpu --mix, as cifar train --cutmix); neither is ever picked.
# The H100 of 2026-11-27 (sixth session) compiled the tensor-core programs, but their gradients
#   disagreed with float32 (forward 3e-4, both gradients 1.2-1.6 of the largest value); since then a
#   float16 mode runs only after agreeing with float32 at start-up: where only the forward
#   convolutions agree, for them alone (the gradients in float32; such a variant can be picked,
#   and its JSON's matrixCheck still shows the gradients' figures), else float32 runs (rate 0).
#   Each tensor-core variant also probes the device's subgroup-matrix loads against the
#   specification (matrix-probe.ts: 128 cases of layout, stride and offset, 16 of them after or
#   before a 4-byte workgroup scalar, 12 with a loop bounded by a uniform and/or a workgroup
#   reduction first; JSON matrixProbe). Since the seventh session of 2026-11-27
#   the gradient programs have no such scalar (vec4s instead: the suspect is the 16-byte alignment
#   cooperative-matrix loads need), so plain tensor-cores passing its check would confirm it.
#   It did, in the tenth session (all three kernels within 3.3e-4; the probe's only failures the
#   loads after a 4-byte scalar): the float16 tensor cores are now the default (auto).
#   Six variants asked which setting was the cause, each JSON's matrixCheck giving the figures:
#   tensor-cores-unscaled (dy not scaled; never trained with), -scale-registers (dy's scale
#   reduced by every invocation in registers: no workgroup memory, barrier or uniform load
#   before the matrices), -plain (no prefetch, scalar loads),
#   -tiles64, -no-robustness (Dawn's disable_robustness), -fresh (a new bind group per dispatch:
#   the gradients bind one input more, dy's maxima, made just before). For instance
#   BENCH=quick BENCH_ONLY="default tensor-cores tensor-cores-unscaled tensor-cores-scale-registers tensor-cores-plain tensor-cores-tiles64 tensor-cores-no-robustness tensor-cores-fresh".
# QUICK_BATCHES=128,256: the batch sizes of the default's row with BENCH=quick (default 256 alone;
#   include 256, which picks the variant), e.g. to know the step rate of a batch-128 recipe.
# BENCH=1 (the default) runs the full table (128/256/512) with PyTorch's reference, those two,
#   and the variants that are off by default (scalar loads, scalar reads, 8 deep, no prefetch,
#   64-wide tiles, input gradient as forward, split forward, tfjs' forward convolution) at 256.
# Smoke test on a software adapter: SOFT=1 DEADLINE_S=300 bash scripts/gpu/train-run.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
G=$(dirname "$0")
DEADLINE_S=${DEADLINE_S:-530}
# The smoke test (SOFT=1) must not overwrite the committed model when run in a checkout.
M=${MODEL_OUT:-$([[ -n ${SOFT:-} ]] && echo /tmp/cifar-soft-model || echo models/resnet18)}
# RESUME=auto, for the second call of a session whose first may or may not have finished its run
# (a warm machine is given back after 30 s idle: no time to look at the first call's output and
# choose): resumes when $M has a checkpoint but no model.json, else trains nothing (TRAIN=0) and
# runs the benchmarks asked for. Give MODEL_OUT a folder outside the repository: the checkout's
# models/resnet18 always has a model.json.
if [[ ${RESUME:-} == auto ]]; then
  if [[ -d $M/checkpoint && ! -f $M/model.json ]]; then RESUME=1; else RESUME=; TRAIN=0; fi
fi
t0=$(date +%s)
log() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/run.log"; }
left() { echo $(( DEADLINE_S - ($(date +%s) - t0) )); }
if [[ -n ${SOFT:-} ]]; then
  B="--allow-software --model resnet10-w8"; BATCHES=4,8; VB=8; IT=1; LIMIT="--limit 512 --test-limit 256"; MODEL="--model resnet10-w8"; EVAL_LIMIT="--limit 256"
else
  B=""; BATCHES=128,256,512; VB=256; IT=5; LIMIT=""; MODEL=""; EVAL_LIMIT=""
fi
BJ=/tmp/bench-json; rm -rf "$BJ"; mkdir -p "$BJ"
# A hung variant must not eat the session: 240 s for a full table, 150 for one batch size.
BENCH_TIMEOUT=$([[ ${BENCH:-1} == quick ]] && echo 150 || echo 240)
bench() { local out=$1; shift; timeout $BENCH_TIMEOUT node "$G/bench-gpu.cjs" $B "$@" --out "$BJ/$out" 2>>"$OUT/run.log" | tee -a "$OUT/run.log"; tar -C "$BJ" -czf "$OUT/bench.tar.gz" .; }
# A variant's step rate, or 0 when its figures are not valid: the device reported errors, or its
# kernels disagreed with tfjs' in the check.
# float16 GEMMs (tensor cores) round the check's inputs: 2e-3 for them, as bench:gpu's own check.
rate() { node -e "const j=require(process.argv[1]); const r=j.rows.find(x=>x.batch===$VB); const tol=j.matmul&&j.matmul!=='f32'?2e-3:1e-3; const bad=j.gpuErrors.length>0 || j.matmul!==(process.argv[2]||j.matmul) || j.kernelCheck.some(c=>Math.max(c.filterError,c.inputError,c.forwardError)>tol); console.log(r&&!bad?Math.round(r.step.imagesPerSecond):0)" "$BJ/$1" "${2:-}" 2>/dev/null || echo 0; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$OUT/run.log" 2>&1
TOGGLES=disable_robustness,vulkan_enable_f16_on_nvidia,allow_unsafe_apis
# Variants: name|bench:gpu flags|the environment that trains with it. The first is the default.
# tensor-cores: float16 GEMMs on subgroup matrices (matrix.ts); its rate counts only if it really ran them (not the float32 fallback).
ALL_VARIANTS=("default||" "f32|--matmul f32|CIFAR_WEBGPU_MATMUL=f32" "tensor-cores|--matmul tensor-cores|CIFAR_WEBGPU_MATMUL=tensor-cores"
  "tensor-cores-32|--matmul tensor-cores --matrix-tk 32|CIFAR_WEBGPU_MATMUL=tensor-cores CIFAR_WEBGPU_MATRIX_TK=32"
  "no-robustness|--dawn-toggles $TOGGLES|CIFAR_WEBGPU_DAWN_TOGGLES=$TOGGLES"
  "cutout-16|--cutout 16|"
  "fresh-bind-groups|--fresh-bind-groups|CIFAR_WEBGPU_BIND_GROUPS=fresh"
  "cpu-side|--dawn-backend null --batches 16|"
  "tensor-cores-unscaled|--matmul tensor-cores --matrix-scale off|"
  "tensor-cores-scale-registers|--matmul tensor-cores --matrix-scale registers|CIFAR_WEBGPU_MATMUL=tensor-cores CIFAR_WEBGPU_MATRIX_SCALE=registers"
  "tensor-cores-plain|--matmul tensor-cores --no-prefetch --no-vec4-loads|CIFAR_WEBGPU_MATMUL=tensor-cores CIFAR_WEBGPU_PREFETCH=0 CIFAR_WEBGPU_LOADS=scalar"
  "tensor-cores-tiles64|--matmul tensor-cores --tile 64|CIFAR_WEBGPU_MATMUL=tensor-cores CIFAR_WEBGPU_TILE=64"
  "tensor-cores-no-robustness|--matmul tensor-cores --dawn-toggles $TOGGLES|CIFAR_WEBGPU_MATMUL=tensor-cores CIFAR_WEBGPU_DAWN_TOGGLES=$TOGGLES"
  "tensor-cores-fresh|--matmul tensor-cores --fresh-bind-groups|CIFAR_WEBGPU_MATMUL=tensor-cores CIFAR_WEBGPU_BIND_GROUPS=fresh"
  "ema|--ema 0.999|" "mix|--mix|"
  "scalar-loads|--no-vec4-loads|CIFAR_WEBGPU_LOADS=scalar"
  "scalar-reads|--no-vec4|CIFAR_WEBGPU_VEC4=0"
  "8-deep|--no-deep-k|CIFAR_WEBGPU_TK=8"
  "no-prefetch|--no-prefetch|CIFAR_WEBGPU_PREFETCH=0"
  "tiles64|--tile 64|CIFAR_WEBGPU_TILE=64"
  "dx-as-forward|--dx-forward|CIFAR_WEBGPU_DX=forward"
  "split-forward|--split-forward|CIFAR_WEBGPU_SPLIT_FORWARD=1"
  "stock-forward|--stock-forward|CIFAR_WEBGPU_CONV=stock")
# BENCH=quick: the first eight, or those BENCH_ONLY names; BENCH=1: all.
VARIANTS=("${ALL_VARIANTS[@]:0:$([[ -n ${BENCH_ONLY:-} ]] && echo ${#ALL_VARIANTS[@]} || echo 8)}")
[[ ${BENCH:-1} == 1 ]] && VARIANTS=("${ALL_VARIANTS[@]}")
# BENCH_ONLY="default tensor-cores ...": only the variants named (the default first if named), to
# save device time for the run.
if [[ -n ${BENCH_ONLY:-} ]]; then
  kept=()
  for v in "${VARIANTS[@]}"; do [[ " $BENCH_ONLY " == *" ${v%%|*} "* ]] && kept+=("$v"); done
  VARIANTS=("${kept[@]}")
fi
best=0; chosen=default; env=; rates=
if [[ -n ${RESUME:-} || ${BENCH:-1} == 0 ]]; then
  VARIANTS=()
fi
for v in "${VARIANTS[@]}"; do
  IFS='|' read -r name flags venv <<<"$v"
  log "bench: $name $flags"
  if [[ $name == default ]]; then
    # The default with PyTorch's reference (the full table with BENCH=1), profiled.
    bench "bench-$name.json" --batches $([[ ${BENCH:-1} == 1 ]] && echo $BATCHES || echo ${QUICK_BATCHES:-$VB}) --iterations $IT
    best=$(rate "bench-$name.json"); rates="default $best"
  else
    bench "bench-$name.json" --batches $VB --iterations $IT --no-reference $([[ $name == no-robustness ]] || echo --no-profile) $flags
    r=$(rate "bench-$name.json" "$([[ $name == tensor-cores* ]] && echo tensor-cores)"); rates="$rates, $name $r"
    # The float16 GEMMs' start-up check against float32 (each kernel's disagreement; over 2e-3 and float32 ran instead).
    [[ $name == tensor-cores* ]] && log "$name: $(node -e "const j=require(process.argv[1]); console.log('matmul', j.matmul, '; check', JSON.stringify(j.matrixCheck), j.matmulFallback ? '; ' + j.matmulFallback : '', '; load probe', JSON.stringify(j.matrixProbe))" "$BJ/bench-$name.json" 2>/dev/null)"
    # cutout-16 is the default kernels' step with cutout (the recipe's cost, not a kernel variant)
    # and fresh-bind-groups tfjs' way of binding (what the reuse saves shows in the training loop
    # more than in a GPU-bound step): measured beside the default, never picked.
    # ema and mix likewise: the default kernels' step with the weight average (TRAIN_FLAGS="--ema 0.999"
    # trains with it), with mixed batches (TRAIN_FLAGS="--cutmix 1").
    if [[ $name != cutout-16 && $name != fresh-bind-groups && $name != tensor-cores-unscaled && $name != ema && $name != mix ]] && (( r > best )); then best=$r; chosen=$name; env=$venv; fi
  fi
done
[[ -n $rates ]] && log "step img/s at $VB: $rates -> training with $chosen ${env:-(the defaults)}"
[[ -f $BJ/bench-no-robustness.json ]] && log "adapter with $TOGGLES: $(node -e "const j=require(process.argv[1]); console.log('features', j.adapterFeatures.join(' '), '; limits', JSON.stringify(j.adapterLimits), '; subgroup matrices', JSON.stringify(j.subgroupMatrixConfigs))" "$BJ/bench-no-robustness.json" 2>/dev/null)"
[[ -n $env ]] && export $env

if [[ -f /tmp/data/cifar-10-batches-bin/test_batch.bin ]]; then
  log "dataset: already imported (a warm machine)"
else
  log "dataset"
  # The import took 38.8-41 s on the 16-core GPU host when sharp decoded every JPEG (17.6-21 s on
  # 2 cores here, 4.2 s since CIFAR's plain JPEGs are decoded in-process). A larger libuv pool
  # only helps images that still go to sharp; only the environment at start sizes it.
  UV_THREADPOOL_SIZE=$(nproc) node "$G/cli/cifar.mjs" download --from "$G/data.tar.gz" --dir /tmp/data --quiet >>"$OUT/run.log" 2>&1 || log "download failed"
fi

# TRAIN=0 skips training and its evaluation (a later call on the same machine that only runs
# REFERENCE_TRAIN and BENCH_AFTER).
if [[ ${TRAIN:-1} != 0 ]]; then
  if [[ ${TRAIN_FLAGS:-} == best-reference ]]; then
    TRAIN_FLAGS=$(node "$G/best-reference.mjs" /tmp/reference-runs 2> >(tee -a "$OUT/run.log" >&2))
  fi
  # Epochs among the flags (best-reference writes the recipe's, e.g. a 100-epoch PyTorch run's)
  # stand for EPOCHS here: the schedule of that many, stopped at the deadline with a checkpoint.
  run_epochs=${EPOCHS:-}
  if [[ ${TRAIN_FLAGS:-} =~ --epochs\ ([0-9]+) ]]; then
    run_epochs=${BASH_REMATCH[1]}; TRAIN_FLAGS=${TRAIN_FLAGS/--epochs $run_epochs/}
  fi
  if [[ -n ${RESUME:-} ]]; then
    log "train: resuming the checkpointed run ($(left) s left)"
    run=(train --resume --out "$M" --backend webgpu)
  else
    if [[ -n ${run_epochs:-} ]]; then
      schedule=(--epochs "$run_epochs")
      log "train: $run_epochs epochs ($(left) s left)"
    else
      # Without EPOCHS or RESUME, as many epochs as fit before the deadline (cifar train
      # --time-limit: planned from the run's own step time, the schedule fitted to them), at most
      # MAX_EPOCHS (default the config's 50; SOFT: 1); 45 s kept for the evaluations and packing.
      max=${MAX_EPOCHS:-$([[ -n ${SOFT:-} ]] && echo 1)}
      schedule=(${max:+--epochs $max} --time-limit $(( $(left) - 45 )))
      log "train: the epochs that fit in $(( $(left) - 45 )) s${max:+, at most $max}"
    fi
    run=(train --config "${CONFIG:-configs/resnet18.json}" $MODEL --backend webgpu --data /tmp/data "${schedule[@]}" --weights float16 --out "$M" $LIMIT ${TRAIN_FLAGS:-})
  fi
  # SIGTERM at the deadline: the run saves a checkpoint (exit 143) for RESUME=1.
  timeout -k 30 $(( $(left) - 25 )) node "$G/cli/cifar.mjs" "${run[@]}" >>"$OUT/run.log" 2>&1
  rc=$?; (( rc == 124 )) && rc=143 # timeout reports its own 124 when it had to stop the run
  grep -v Warning "$OUT/run.log" | grep -E '^ *[0-9]+/[0-9]+ |^time limit|saved|error' | tail -n 60
  if (( rc == 0 )); then
    # The weights and the model folder come back first: a call that runs out of time during the
    # evaluations below still returns the trained model.
    w=$(ls "$M"/weights-*.bin 2>/dev/null | head -1)
    [[ -n $w ]] && split -b 15000000 "$w" "$OUT/$(basename "$w").part-"
    tar -C "$(dirname "$M")" -czf "$OUT/results.tar.gz" --exclude=checkpoint --exclude='weights-*.bin' "$(basename "$M")" 2>/dev/null
    log "eval of the saved (float16) model"
    timeout 60 node "$G/cli/cifar.mjs" eval --model "$M" --data /tmp/data --backend webgpu $EVAL_LIMIT --plot "$M/confusion.png" > "$M/eval.txt" 2>&1 || log "eval exited $?"
    grep -v Warning "$M/eval.txt" | head -20
    # And with flip test-time augmentation (cifar eval --tta), reported beside it.
    timeout 60 node "$G/cli/cifar.mjs" eval --model "$M" --data /tmp/data --backend webgpu $EVAL_LIMIT --tta > "$M/eval-tta.txt" 2>&1 || log "eval --tta exited $?"
    log "with flip TTA: $(grep -m1 '^accuracy' "$M/eval-tta.txt")"
    # F32_EVAL=1 (default): once more with float32 kernels (CIFAR_WEBGPU_MATMUL=f32). The default
    # runs above used auto (the tensor cores where they pass the start-up check, whose verdict is
    # the eval's backend line): the accuracy of the float16 forward pass against float32's.
    log "backend of the eval: $(grep -m1 '^backend' "$M/eval.txt")"
    if [[ ${F32_EVAL:-1} != 0 ]]; then
      CIFAR_WEBGPU_MATMUL=f32 timeout 90 node "$G/cli/cifar.mjs" eval --model "$M" --data /tmp/data --backend webgpu $EVAL_LIMIT > "$M/eval-f32.txt" 2>&1 || log "eval with float32 kernels exited $?"
      log "with float32 kernels: $(grep -m1 '^accuracy' "$M/eval-f32.txt")"
    fi
  else
    log "train exited $rc: $( ((rc == 143)) && echo 'stopped at the deadline with a checkpoint; continue with RESUME=1 on this machine while it is warm' || echo failed)"
  fi
fi
# REFERENCE_TRAIN="0 16": after the run, the same recipe in PyTorch on the same GPU and data
# (reference-train.py, bf16, 110 s for 50 epochs on the H100 of 2026-11-27), once per cutout size listed,
# while time is left: what the recipe reaches on this data, against what our training reaches.
# Other recipes: entries separated by ';', each reference-train.py's flags over the recipe's
# (cutout 16 unless given), e.g. REFERENCE_TRAIN="--batch 128 --lr 0.1; --smoothing 0.2"; a
# 50-epoch run of the recipe reached 92.02% there, and the issue asks for 93%.
# Their histories go into bench.tar.gz (reference-train-NAME.json, NAME from the flags).
# REFERENCE_PARALLEL=N runs N recipes at a time, each a process of its own on the one GPU (a
# 32×32 ResNet-18 step leaves an H100 idle between its kernels: unmeasured how much N gains;
# each run's seconds say it), their output in reference-train-NAME.log, tailed when they end.
if [[ -n ${REFERENCE_TRAIN:-} && -f /tmp/data/cifar-10-batches-bin/test_batch.bin ]]; then
  if [[ $REFERENCE_TRAIN == *";"* || $REFERENCE_TRAIN == *"--"* ]]; then
    IFS=';' read -r -a recipes <<<"$REFERENCE_TRAIN"
  else
    recipes=(); for c in $REFERENCE_TRAIN; do recipes+=("--cutout $c"); done
  fi
  parallel=${REFERENCE_PARALLEL:-1}
  names=()
  for flags in "${recipes[@]}"; do
    flags=$(echo $flags) # trimmed
    [[ -z $flags ]] && continue
    [[ $flags == *--cutout* ]] || flags="--cutout 16 $flags"
    (( $(left) < 60 )) && break
    name=$(echo "$flags" | sed -e 's/--//g' -e 's/[^A-Za-z0-9.]\+/-/g' -e 's/^cutout-\([0-9]*\)$/cutout\1/')
    log "reference training in PyTorch: ${EPOCHS:-50} epochs, $flags"
    # Tested after every 5th epoch and the last, as configs/resnet18.json (a flag in the recipe overrides it).
    ref=(python3 "$G/reference-train.py" --data /tmp/data/cifar-10-batches-bin --epochs "${EPOCHS:-50}" --test-every 5 $flags --deadline $(( $(left) - 30 )) --out "$BJ/reference-train-$name.json")
    if (( parallel > 1 )); then
      timeout $(( $(left) - 5 )) "${ref[@]}" >"$BJ/reference-train-$name.log" 2>&1 &
      names+=("$name")
      (( $(jobs -rp | wc -l) >= parallel )) && wait -n
    else
      timeout $(( $(left) - 5 )) "${ref[@]}" 2>&1 | grep -v Warning | tee -a "$OUT/run.log" | tail -n 3
      tar -C "$BJ" -czf "$OUT/bench.tar.gz" .
    fi
  done
  if (( parallel > 1 )); then
    wait
    for name in "${names[@]}"; do
      grep -v Warning "$BJ/reference-train-$name.log" >>"$OUT/run.log"
      echo "$name: $(tail -n 1 "$BJ/reference-train-$name.log")"
    done
    tar -C "$BJ" -czf "$OUT/bench.tar.gz" .
  fi
  # Kept for a later call on this warm machine (TRAIN_FLAGS=best-reference); $BJ starts empty each call.
  mkdir -p /tmp/reference-runs && cp "$BJ"/reference-train-*.json /tmp/reference-runs/ 2>/dev/null
  node "$G/best-reference.mjs" /tmp/reference-runs >/dev/null 2> >(tee -a "$OUT/run.log" >&2)
fi
# BENCH_AFTER=1: with a minute and a half left after the run, the default kernels (profiled: each
# convolution's GPU time) against Dawn's disable_robustness toggle at batch 256 (no reference):
# what the next run should train with. BENCH_AFTER="no-robustness dx-as-forward ..." names the
# variants of the table above to measure instead, in that order, while time is left. (On
# 2026-11-27 it measured vec4 loads, then off by default: 5,724 img/s against 4,633.)
# Not right after the benchmarks of the start with no run in between (TRAIN=0, e.g. RESUME=auto
# that found the run finished, with BENCH=quick): they measured the same.
if [[ -n ${BENCH_AFTER:-} ]] && ! [[ -n $rates && ${TRAIN:-1} == 0 ]] && (( $(left) > 90 )); then
  rates=
  wanted=$([[ $BENCH_AFTER == 1 ]] && echo no-robustness || echo "$BENCH_AFTER")
  after=("default||")
  for w in $wanted; do
    for v in "${ALL_VARIANTS[@]}"; do [[ ${v%%|*} == "$w" ]] && after+=("$v"); done
  done
  for v in "${after[@]}"; do
    IFS='|' read -r name flags venv <<<"$v"
    (( $(left) < 35 )) && break
    log "bench after the run: $name $flags"
    timeout $(( $(left) - 5 )) node "$G/bench-gpu.cjs" $B --batches $VB --iterations $IT --no-reference $([[ $name == default ]] || echo --no-profile) $flags --out "$BJ/after-$name.json" 2>>"$OUT/run.log" | tee -a "$OUT/run.log"
    tar -C "$BJ" -czf "$OUT/bench.tar.gz" .
    rates="$rates $name $(rate "after-$name.json" "$([[ $name == tensor-cores* ]] && echo tensor-cores)")"
  done
  log "step img/s at $VB after the run:$rates"
fi
tar -C "$(dirname "$M")" -czf "$OUT/results.tar.gz" --exclude=checkpoint --exclude='weights-*.bin' "$(basename "$M")" 2>/dev/null
log "done"
