# Source me: run the benchmarks as on a plain-AVX2 (x86-64-v3) host, on a CPU that also has AVX-512.
#
#   . benchmarks/avx2-host.sh && .venv/bin/python benchmarks/bench_batch.py --records 100000
#
# Why: speed targets must hold on any x86-64 CPU with AVX2, and machines of this kind differ (some have
# AVX-512/VNNI, some not). Three things pick AVX-512 code at run time or build time here:
# - hnswlib is compiled on install with -march=native: a copy built with -march=x86-64-v3 goes first on
#   PYTHONPATH (built once into $AVX2_SITE, from PyPI's source distribution);
# - numpy dispatches to AVX-512 kernels: NPY_DISABLE_CPU_FEATURES turns the dispatch targets off;
# - OpenBLAS picks its kernels by CPU: OPENBLAS_CORETYPE=Haswell is its AVX2 kernel set.
# The static text model and the fusion model use no int8/VNNI code. Child processes (the service that
# loadtest/bench_service.py starts) inherit all of it. Per-core speed of an older CPU is not emulated.

AVX2_SITE=${AVX2_SITE:-/tmp/avx2-host/site}
_py=${PY:-.venv/bin/python}
if ! ls "$AVX2_SITE"/hnswlib*.so >/dev/null 2>&1; then
  HNSWLIB_NO_NATIVE=1 CFLAGS="-march=x86-64-v3" CXXFLAGS="-march=x86-64-v3" \
    "$_py" -m pip install -q --no-deps --no-binary hnswlib --no-cache-dir --target "$AVX2_SITE" \
    "hnswlib==$("$_py" -c 'import importlib.metadata as m; print(m.version("hnswlib"))')"
fi
export PYTHONPATH="$AVX2_SITE${PYTHONPATH:+:$PYTHONPATH}"
export NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR"
export OPENBLAS_CORETYPE=Haswell
unset _py
