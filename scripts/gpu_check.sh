#!/usr/bin/env bash
# GPU check of the ESM knowledge-neuron pipeline (esm2_t6_8M shape), the NER throughput and the
# distributed-GNN workflows (nccl), run from the source tree.
#
#   scripts/gpu_check.sh --prepare   # here, with a package registry: fill .theorylab/gpu/ with
#                                    # the pure-Python wheels the GPU image lacks (captum,
#                                    # fair-esm) and the aaanalysis benchmark TSVs (data only)
#   scripts/gpu_check.sh [OUTDIR]    # on the GPU machine (no registry, carry .theorylab/gpu):
#                                    # installs nothing system-wide, writes OUTDIR/esm_gpu.json
#   scripts/gpu_check.sh --smoke     # toy size on CPU: checks the script end to end
set -euo pipefail
cd "$(dirname "$0")/.."
VENDOR=.theorylab/gpu

if [[ "${1:-}" == "--prepare" ]]; then
    rm -rf "$VENDOR" && mkdir -p "$VENDOR/wheels" "$VENDOR/data/aaanalysis/_data"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$VENDOR/wheels" \
        captum==0.9.0 fair-esm==2.0.0
    # NER (Shen et al. 2018): seqeval and the shipped corpus are sdists: build their wheels here
    python3 -m pip wheel -q --no-deps -w "$VENDOR/wheels" seqeval==1.2.2 hironsancorpus==0.1.2
    # distributed GNN: pymetis is a compiled wheel: one per CPython the GPU image may have
    mkdir -p "$VENDOR/wheels-gnn"
    for py in 3.10 3.11 3.12 3.13; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
            -d "$VENDOR/wheels-gnn" pymetis==2025.2.2
    done
    # NMT (Chu & Wang 2018): subwords, BLEU, the Bible reader; django for its .po catalogues, in
    # their own folder (sentencepiece and lxml are built for this Python: if the GPU image's
    # differs, only the NMT check is skipped)
    mkdir -p "$VENDOR/wheels-nmt"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$VENDOR/wheels-nmt" \
        sentencepiece==0.2.3 pysword==0.2.8 sacrebleu==2.6.0 portalocker tabulate colorama \
        lxml django==5.2.19 asgiref sqlparse || echo "note: NMT wheels not fetched" >&2
    # power (Liao et al. review): pandapower and the dependencies a torch image may lack, in
    # their own folder (cachebox and pydantic-core are built for this Python: if the GPU image's
    # differs, only the power check is skipped)
    mkdir -p "$VENDOR/wheels-power"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$VENDOR/wheels-power" \
        pandapower==3.5.6 deepdiff==9.1.0 orderly-set==5.5.0 cachebox==5.2.3 geojson==3.3.0 \
        pandera==0.35.0 typeguard==4.6.1 typing-inspect==0.9.0 mypy-extensions==1.1.0 \
        colorama==0.4.6 networkx==3.6.1 pydantic==2.13.4 pydantic-core==2.46.4 \
        annotated-types==0.7.0 typing-inspection==0.4.2
    # only the TSVs of aaanalysis: a namespace package that theorylab finds via find_spec
    src=$(python3 -c "import importlib.util as u; print(list(u.find_spec('aaanalysis').submodule_search_locations)[0])")
    mkdir -p "$VENDOR/data/aaanalysis/_data/benchmarks"
    for s in SOLUBLE CAPSID TAIL DISULFIDE AMYLO; do
        cp "$src/_data/benchmarks/SEQ_$s.tsv" "$VENDOR/data/aaanalysis/_data/benchmarks/"
    done
    du -sh "$VENDOR"
    exit 0
fi

SITE=${TMPDIR:-/tmp}/theorylab-gpu-site
if [[ -d "$VENDOR/wheels" ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$VENDOR"/wheels/*.whl
fi
if [[ -d "$VENDOR/wheels-gnn" ]] && ! python3 -c "import pymetis" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
        --find-links "$VENDOR/wheels-gnn" pymetis==2025.2.2 \
        || echo "note: no pymetis wheel for this Python; the GNN check will skip" >&2
fi
if [[ -d "$VENDOR/wheels-nmt" ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$VENDOR"/wheels-nmt/*.whl || echo "NMT wheels not installed" >&2
fi
if [[ -d "$VENDOR/wheels-power" ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$VENDOR"/wheels-power/*.whl || echo "power wheels not installed" >&2
fi
export PYTHONPATH="src:$SITE:$VENDOR/data${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
python3 - <<'EOF'
import importlib.util, sys
missing = [m for m in ("torch", "captum", "esm", "pandas", "scipy", "matplotlib", "tqdm")
           if importlib.util.find_spec(m) is None]
if importlib.util.find_spec("aaanalysis") is None:
    missing.append("aaanalysis TSVs")
if missing:
    sys.exit(f"error: missing {', '.join(missing)}; run scripts/gpu_check.sh --prepare here "
             "and carry .theorylab/gpu")
EOF
if [[ "${1:-}" == "--smoke" ]]; then
    exec python3 scripts/gpu_check.py --smoke --out "${2:-${OUT:-results}}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
OUTDIR="${1:-${OUT:-results}}"
python3 scripts/gpu_check.py --out "$OUTDIR"
# check "MODULES" "WHY SKIPPED" CMD...: run CMD when Python imports MODULES, else say why it is skipped
check() {
    local modules="$1" skipped="$2"
    shift 2
    if python3 -c "import $modules" 2>/dev/null; then
        "$@"
    else
        echo "$skipped" >&2
    fi
}
# NER: CNN-CNN-LSTM vs BiLSTM-CRF training throughput and batched vs looped BALD on CUDA
check "seqeval, hironsan.corpus, sklearn" \
    "NER check skipped: seqeval / hironsancorpus / scikit-learn missing (--prepare)" \
    python3 benchmarks/bench_ner.py --device cuda --out "$OUTDIR/ner_gpu.json"
# distributed GNN (Lin et al. survey): the four workflows on a 10^5-node SBM; nccl needs a GPU per
# rank, so with one GPU P = 1 runs nccl on cuda:0 and P = 2 gloo on the CPU (the output says which)
check pymetis "GNN check skipped: pymetis missing (--prepare)" \
    python3 benchmarks/bench_gnn.py --device auto --worlds 1,2 --out "$OUTDIR/gnn_gpu.json"
# NMT: batched vs one-at-a-time beam search, greedy, training tokens/s on CUDA
check "sentencepiece, sacrebleu, django" \
    "NMT check skipped: sentencepiece / sacrebleu / django missing (--prepare)" \
    python3 benchmarks/bench_nmt.py --device cuda --out "$OUTDIR/nmt_gpu.json"
# Driving (Gao et al. survey): LM planner training throughput and constrained decoding on CUDA
check numba "driving check skipped: numba missing" \
    python3 benchmarks/bench_ad.py --device cuda --planner-only --out "$OUTDIR/ad_gpu.json"
# power: GNN/MLP surrogate training and batched inference on CUDA against pp.runpp (CPU)
check pandapower "power check skipped: pandapower missing (--prepare)" \
    python3 benchmarks/bench_power_gpu.py --device cuda --out "$OUTDIR/power_gpu.json"
