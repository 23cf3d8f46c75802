"""`_cutter.c` under AddressSanitizer and UndefinedBehaviorSanitizer, fuzzed with hostile input.

The C module is compiled here with ``-fsanitize=address,undefined`` and loaded, as
`keyroll._cutter`, into a child Python (``LD_PRELOAD`` of gcc's libasan, ``PYTHONMALLOC=malloc``
so that the module's `PyMem_Malloc` buffers are guarded; leaks not checked: Python's own
allocations would drown them). The child drives every function with random
texts (every kind of whitespace, quotes, escapes, percent-encoding, base64, surrogates,
astral characters, long lines) and random parameters, directly and through
`Recogniser.words_and_runs` with tags and sizes, for a bounded time. Any out-of-bounds access,
use after free or undefined behaviour aborts the child, which fails the test with the
sanitizer's report. A canary (a read past a buffer, built and run the same way) checks first
that the sanitizer is on: a harness that could not catch a bug would fail instead of pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "src" / "keyroll" / "_cutter.c"
FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=undefined", "-shared", "-fPIC"]
SECONDS = 20  # the fuzz's time budget in the child (and a count bound besides)

_CANARY = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *overread(PyObject *self, PyObject *args) {
    char *buffer = PyMem_Malloc(8);
    volatile int at = 8;
    int value = buffer[at]; /* one past the end */
    PyMem_Free(buffer);
    return PyLong_FromLong(value);
}
static PyMethodDef methods[] = {{"overread", overread, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "canary", NULL, -1, methods};
PyMODINIT_FUNC PyInit_canary(void) { return PyModule_Create(&module); }
"""

_LOAD = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("keyroll._cutter", sys.argv[1])
cutter = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cutter)
sys.modules["keyroll._cutter"] = cutter  # before keyroll: its `from keyroll import _cutter`
"""

_FUZZ = _LOAD + r"""
import random, time
import keyroll.recognise as recognise
assert recognise._cutter is cutter, "the sanitized build is not the one in use"
from keyroll.recognise import Recogniser, derive_key, digest, shape
from keyroll.recognise_tag import tag, tag_key, tag_map

rng = random.Random(int(sys.argv[2]))
PIECES = [*"ab09+/=_-%.~\"'`:@,;&?#<>()[]{}|\\$!", " ", "\t", "\n", "\r", "\x0b", "\x1c", "\x00",
          "\x85", "\xa0", "\u2003", "\u2028", "\xe9", "\u20ac", "\U0001f600", "\udcff", "\ud800",
          "%2F", "%C3%A9", "%e", "%", "\\u00e9", "\\ud83d\\ude00", "\\u12", "\\", "\\\\", "\\ ",
          "'\\''", "'\"'\"'", "QUJDREVGR0g=", "QUJD", "-----BEGIN KEY-----\n", "-----END KEY-----",
          "://u:p@h", "postgresql://app:p@ss@db/x", "KEY=", "=" * 5, "a" * 70, "MIIB" * 20 + "\n"]
KEY = derive_key(b"f" * 32)
TAGS = tag_key(KEY)


def text():
    n = rng.choice([0, 1, 3, 20, 200, 2000])
    return "".join(rng.choice(PIECES) for _ in range(n))


def junk_bytes():
    return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 64, 700])))


deadline = time.monotonic() + float(sys.argv[3])
calls = 0
for turn in range(200_000):
    if time.monotonic() > deadline:
        break
    t = text()
    tags = bytes(rng.randrange(256) for _ in range(8192)) if rng.random() < .5 else b""
    key = bytes(16) if tags or rng.random() < .5 else junk_bytes()[:rng.choice([0, 15, 16, 17])]
    windows = tuple((rng.randrange(-3, 60), rng.randrange(-3, 12))
                    for _ in range(rng.randrange(0, 4)))
    try:
        cutter.words(t, rng.choice([-5, 0, 1, 3, 9, 40, 5000]), junk_bytes(), junk_bytes(),
                     rng.randrange(-3, 60), windows, rng.random() < .5, rng.random() < .5,
                     junk_bytes(), junk_bytes(), key, tags,
                     tags[::-1] if rng.random() < .5 else b"", rng.choice([-1, 0, 1, 9, 80]))
    except ValueError:
        pass
    cutter.runs(t, rng.choice([-1, 0, 1, 4, 9, 300]))
    cutter.run_spans(t, rng.choice([-1, 0, 1, 4, 9, 300]))
    cutter.long_runs(t, rng.choice([-1, 0, 1, 9, 100]))
    try:
        cutter.blocks([t, t[: len(t) // 2], "\n".join(t.split())], junk_bytes(), key,
                      tags if len(key) == 16 else b"")
    except ValueError:
        pass
    cutter.siphash24(bytes(16), t.encode("utf-8", "surrogatepass"))
    if turn % 5 == 0:  # as keyroll scan calls it: real shapes, tags and sizes
        values = [t[:n] for n in (rng.randrange(1, 40) for _ in range(3)) if t[:n].strip()]
        values = [v for v in values  # a value is valid text: no lone surrogate
                  if not any(0xD800 <= ord(ch) <= 0xDFFF for ch in v)] or ["Pq7$x9a2f"]
        shapes = [shape(v) for v in values]
        recogniser = Recogniser(KEY, [digest(KEY, v) for v in values], shapes=shapes,
                                plain_shapes=shapes[1:], plain_tags=[tag(TAGS, v) for v in values[1:]],
                                tags=[tag(TAGS, v) for v in values])
        other = text()
        planted = other[:len(other) // 2] + " " + values[0] + " " + other[len(other) // 2:]
        recogniser.words_and_runs(planted, rng.choice([0, 1, 8]))
        recogniser.words(t)
    calls += 1
print("calls", calls)
"""


def _build(source: Path, target: Path) -> None:
    compiler = shutil.which("gcc")
    assert compiler, "gcc is needed (every machine and CI has it): install it"
    include = sysconfig.get_paths()["include"]
    done = subprocess.run([compiler, *FLAGS, "-I", include, str(source), "-o", str(target)],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, check=True, timeout=30).stdout.strip()
    assert os.path.isabs(libasan), f"gcc has no libasan ({libasan!r}): install libasan"
    # PYTHONMALLOC=malloc: PyMem_Malloc (the cutter's buffers) from malloc, which ASan
    # guards, not from pymalloc's arenas, inside which it sees no overflow
    env = {**os.environ, "LD_PRELOAD": libasan, "PYTHONMALLOC": "malloc",
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:halt_on_error=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=SECONDS + 120, check=False, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("asan")
    target = folder / ("_cutter" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    _build(SOURCE, target)
    return target


def test_the_sanitizer_catches_a_read_past_a_buffer(tmp_path: Path) -> None:
    source = tmp_path / "canary.c"
    source.write_text(_CANARY)
    target = tmp_path / ("canary" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    _build(source, target)
    done = _run("import importlib.util, sys\n"
                "spec = importlib.util.spec_from_file_location('canary', sys.argv[1])\n"
                "module = importlib.util.module_from_spec(spec)\n"
                "spec.loader.exec_module(module)\nmodule.overread()\n", str(target))
    assert done.returncode != 0
    assert "AddressSanitizer: heap-buffer-overflow" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("seed", [1])
def test_the_cutter_survives_hostile_input_under_asan_and_ubsan(sanitized: Path,
                                                                seed: int) -> None:
    done = _run(_FUZZ, str(sanitized), str(seed), str(SECONDS))
    report = done.stderr[-4000:]
    assert "AddressSanitizer" not in done.stderr and "runtime error" not in done.stderr, report
    assert done.returncode == 0, report
    calls = int(done.stdout.split()[-1])
    assert calls > 100, done.stdout  # the fuzz ran (it is bounded by time, not skipped)
