# make demo: SynthFaces -> two teachers -> KD and no-KD students -> evaluation -> runs/demo/report.md
# make demo-igkd: SynthFaces -> ResNet-18 baseline on clean + erased views; clean teacher -> IGKD -> test + occluded -> runs/demo-igkd/report.md
# make demo-scn: SynthFaces with 10/20/30 % flipped labels -> ResNet-18 CE vs SCN, same budget and seed -> runs/demo-scn/report.md
# make demo-fskd: SynthFaces identities -> CBAM-iResNet-18 HR teacher -> 1/4-resolution and multi-resolution students with F-SKD, A-SKD and no KD -> runs/demo-fskd/report.md
# make test: lint + the whole test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kdface-installed
DEMO := runs/demo
PRESET := demo
# Every demo stage runs with --resume: a finished stage is reused, an interrupted one continues from its
# last backup, so `make demo` can be run again at any time. `make clean-demo` starts over.
RESUME := --resume
STAGE = printf '\n==== %s ====\n' "$(1)"

.PHONY: demo demo-igkd demo-scn demo-fskd test test-fast lint format clean-demo

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# Two workers, each taking whole test files (module fixtures are built once); the slowest tests are listed.
test: $(STAMP) lint
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.ONESHELL:
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

demo: $(STAMP)
	start=$$(date +%s)
	mkdir -p $(DEMO)
	export PYTHONUNBUFFERED=1
	$(call STAGE,1/6 SynthFaces dataset (generated once))
	$(PY) -m kdface.data.synthfaces --out datasets/synthfaces/$(PRESET) --preset $(PRESET)
	$(call STAGE,2/6 Tough-Teacher (hard landmarks))
	$(PY) train_teacher.py --method kdloss --teacher tough --dataset synthface --preset $(PRESET) --run-dir $(DEMO)/tough $(RESUME)
	$(call STAGE,3/6 Tolerant-Teacher (ASM soft landmarks))
	$(PY) train_teacher.py --method kdloss --teacher tolerant --dataset synthface --preset $(PRESET) --run-dir $(DEMO)/tolerant $(RESUME)
	$(call STAGE,4/6 student with KD-Loss)
	$(PY) train_student.py --method kdloss --dataset synthface --preset $(PRESET) --run-dir $(DEMO)/student_kd \
	    --tough models/teachers/synthface_tough.keras --tolerant models/teachers/synthface_tolerant.keras $(RESUME)
	$(call STAGE,5/6 the same student without distillation (plain L2))
	$(PY) train_student.py --method kdloss --dataset synthface --preset $(PRESET) --run-dir $(DEMO)/student_no_kd --no-kd $(RESUME)
	$(call STAGE,6/6 evaluation of the four models -> $(DEMO)/report.md)
	$(PY) test.py --dataset synthface --out $(DEMO) \
	    --model models/students/synthface_kd.keras --model models/students/synthface_no_kd.keras \
	    --model models/teachers/synthface_tough.keras --model models/teachers/synthface_tolerant.keras
	echo "" >> $(DEMO)/report.md
	echo "Demo wall time (make demo, $$(nproc) cores): $$(( $$(date +%s) - start )) s" | tee -a $(DEMO)/report.md

IGKD_DEMO := runs/demo-igkd

demo-igkd: $(STAMP)
	start=$$(date +%s)
	mkdir -p $(IGKD_DEMO)
	export PYTHONUNBUFFERED=1
	$(call STAGE,1/5 SynthFaces dataset (generated once))
	$(PY) -m kdface.data.synthfaces --out datasets/synthfaces/$(PRESET) --preset $(PRESET)
	$(call STAGE,2/5 baseline: ResNet-18 with cross-entropy on clean + erased views)
	$(PY) train_teacher.py --method fer --masked-view --dataset synthface --preset $(PRESET) \
	    --run-dir $(IGKD_DEMO)/baseline --out models/students/synthface_resnet18_masked_baseline.keras $(RESUME)
	$(call STAGE,3/5 clean-image teacher that IGKD starts from)
	$(PY) train_teacher.py --method fer --dataset synthface --preset $(PRESET) \
	    --run-dir $(IGKD_DEMO)/teacher --out models/teachers/synthface_fer_resnet18.keras $(RESUME)
	$(call STAGE,4/5 IGKD: teacher and student trained jointly)
	$(PY) train_student.py --method igkd --dataset synthface --preset $(PRESET) --run-dir $(IGKD_DEMO)/igkd \
	    --t-checkpoint models/teachers/synthface_fer_resnet18.keras --out models/students/synthface_igkd.keras $(RESUME)
	$(call STAGE,5/5 evaluation on the test and occluded splits -> $(IGKD_DEMO)/report.md)
	$(PY) test.py --dataset synthface --out $(IGKD_DEMO) --model models/teachers/synthface_fer_resnet18.keras \
	    --model models/students/synthface_resnet18_masked_baseline.keras --model models/students/synthface_igkd.keras
	echo "" >> $(IGKD_DEMO)/report.md
	echo "Demo wall time (make demo-igkd, $$(nproc) cores): $$(( $$(date +%s) - start )) s" | tee -a $(IGKD_DEMO)/report.md

SCN_DEMO := runs/demo-scn
NOISE_LEVELS := 10 20 30

# Both methods see the same noisy labels (--noise-seed 0), SCN's augmentation, no class balancing,
# the SCN demo preset's 8 epochs and --seed 0.
demo-scn: $(STAMP)
	start=$$(date +%s)
	mkdir -p $(SCN_DEMO)
	export PYTHONUNBUFFERED=1
	$(call STAGE,SynthFaces dataset (generated once))
	$(PY) -m kdface.data.synthfaces --out datasets/synthfaces/$(PRESET) --preset $(PRESET)
	models=()
	for p in $(NOISE_LEVELS); do
	    noise=$$(printf '0.%02d' $$p)
	    $(call STAGE,$$p % label noise: ResNet-18 with plain cross-entropy)
	    $(PY) train_teacher.py --method fer --dataset synthface --preset $(PRESET) --epochs 8 --augment-style scn \
	        --no-balanced-sampler --label-noise $$noise --run-dir $(SCN_DEMO)/ce_noise$$p \
	        --out models/teachers/synthface_ce_noise$$p.keras $(RESUME)
	    $(call STAGE,$$p % label noise: SCN)
	    $(PY) train_teacher.py --method scn --dataset synthface --preset $(PRESET) --label-noise $$noise \
	        --run-dir $(SCN_DEMO)/scn_noise$$p --out models/teachers/synthface_scn_noise$$p.keras $(RESUME)
	    models+=(--model models/teachers/synthface_ce_noise$$p.keras --model models/teachers/synthface_scn_noise$$p.keras)
	done
	$(call STAGE,evaluation on the test split -> $(SCN_DEMO)/report.md)
	$(PY) test.py --dataset synthface --split test --out $(SCN_DEMO) "$${models[@]}"
	{ echo ""; echo "## SCN label reports (training set, final model)"; echo ""
	  $(PY) -c "import sys; from kdface.methods.scn import label_reports_markdown as t; print(t(sys.argv[1:]))" \
	      $(foreach p,$(NOISE_LEVELS),$(SCN_DEMO)/scn_noise$(p)); } >> $(SCN_DEMO)/report.md
	echo "Demo wall time (make demo-scn, $$(nproc) cores): $$(( $$(date +%s) - start )) s" | tee -a $(SCN_DEMO)/report.md

FSKD_DEMO := runs/demo-fskd
FSKD_TEACHER := models/teachers/synthface_fskd_teacher.keras
# The demo preset trains at 32 px: its ladder 4/8/16/32 keeps the paper's 14/28/56/112 ratios. The fixed-
# resolution students train at 8 px (1/4 of the side, the paper's 28 px; 1/8 leaves 4 x 4 pixels). The
# teacher trains 5 epochs; every low-resolution network the same 2 epochs (FSKD_LR_EPOCHS), seed 0.
FSKD_SIZES := 8 1
FSKD_LR_EPOCHS := 2
# `make demo-fskd SEEDS="0 1 2"` repeats the demo per seed and aggregates (kdface.seeds: mean ± std, and a
# gain counts as shown only when it exceeds the seed spread)
SEEDS ?= 0

demo-fskd: $(STAMP)
	start=$$(date +%s)
	mkdir -p $(FSKD_DEMO)
	export PYTHONUNBUFFERED=1
	$(call STAGE,SynthFaces identities (the faceid preset, generated once))
	$(PY) -m kdface.data.synthfaces --out datasets/synthfaces/faceid --preset faceid
	reports=()
	for seed in $(SEEDS); do
	    # seed 0 keeps the single-seed layout; other seeds go to seed<N>/ and name their models _s<N>
	    if [ "$$seed" = 0 ]; then dir=$(FSKD_DEMO); sfx=""; else dir=$(FSKD_DEMO)/seed$$seed; sfx=_s$$seed; fi
	    teacher=models/teachers/synthface_fskd_teacher$$sfx.keras
	    $(call STAGE,seed $$seed: HR teacher: CBAM-iResNet-18 + CosFace on 32 px identities)
	    $(PY) train_teacher.py --method fskd --mode cbam --down-size 0 --dataset synthface --preset $(PRESET) \
	        --seed $$seed --run-dir $$dir/teacher --out $$teacher $(RESUME)
	    models=(--model $$teacher)
	    for d in $(FSKD_SIZES); do
	        $(call STAGE,seed $$seed: --down-size $$d: the same network without distillation)
	        $(PY) train_teacher.py --method fskd --mode cbam --down-size $$d --dataset synthface --preset $(PRESET) \
	            --epochs $(FSKD_LR_EPOCHS) --seed $$seed --run-dir $$dir/nokd_$$d \
	            --out models/students/synthface_nokd_$$d$$sfx.keras $(RESUME)
	        $(call STAGE,seed $$seed: --down-size $$d: F-SKD student)
	        $(PY) train_student.py --method fskd --teacher $$teacher --down-size $$d --dataset synthface \
	            --preset $(PRESET) --epochs $(FSKD_LR_EPOCHS) --seed $$seed --run-dir $$dir/fskd_$$d \
	            --out models/students/synthface_fskd_$$d$$sfx.keras $(RESUME)
	        $(call STAGE,seed $$seed: --down-size $$d: A-SKD student)
	        $(PY) train_student.py --method askd --teacher $$teacher --down-size $$d --dataset synthface \
	            --preset $(PRESET) --epochs $(FSKD_LR_EPOCHS) --seed $$seed --run-dir $$dir/askd_$$d \
	            --out models/students/synthface_askd_$$d$$sfx.keras $(RESUME)
	        models+=(--model models/students/synthface_nokd_$$d$$sfx.keras \
	                 --model models/students/synthface_fskd_$$d$$sfx.keras --model models/students/synthface_askd_$$d$$sfx.keras)
	    done
	    $(call STAGE,seed $$seed: verification of held-out identities at 32/16/8/4 px -> $$dir/report.md)
	    $(PY) test.py --dataset synthface --out $$dir --down-size 32 --down-size 16 --down-size 8 \
	        --down-size 4 "$${models[@]}"
	    reports+=(--report $$seed=$$dir/report.json)
	done
	if [ $(words $(SEEDS)) -gt 1 ]; then
	    $(call STAGE,seeds $(SEEDS): mean ± std and the claims -> $(FSKD_DEMO)/report_seeds.md)
	    $(PY) -m kdface.seeds "$${reports[@]}" --out $(FSKD_DEMO)/report_seeds.md \
	        $(foreach d,$(FSKD_SIZES),--compare synthface_fskd_$(d)=synthface_nokd_$(d) --compare synthface_askd_$(d)=synthface_nokd_$(d))
	fi
	echo "" >> $(FSKD_DEMO)/report.md
	echo "Demo wall time (make demo-fskd SEEDS=\"$(SEEDS)\", $$(nproc) cores): $$(( $$(date +%s) - start )) s" | tee -a $(FSKD_DEMO)/report.md

clean-demo:
	rm -rf $(DEMO) $(IGKD_DEMO) $(SCN_DEMO) $(FSKD_DEMO) models/teachers/synthface_* models/students/synthface_*
