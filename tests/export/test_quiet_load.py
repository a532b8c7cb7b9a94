"""A shipped file loads clean in an app: each one, opened and run once with its runtime's plain API
in a fresh process, writes nothing to the process's stderr (file descriptor 2, where the runtimes'
C++ logs go), beyond lines the runtime writes for any file (listed below, each with why)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from export.formats import BY_NAME

MARK = "-- the runtime is imported; the file loads next --"
# What an app does with each file: import the runtime, open the file, run a face through it once (with its region
# maps: the default network reads three, lips, eyes and cheeks, beside the face; all 0 here).
LOADS = {
    "onnx": """import numpy as np, onnxruntime
{mark}
session = onnxruntime.InferenceSession(PATH, providers=["CPUExecutionProvider"])
session.run(None, {{i.name: np.zeros(i.shape, np.float32) for i in session.get_inputs()}})""",
    "tflite": """import numpy as np
from ai_edge_litert.interpreter import Interpreter
{mark}
interpreter = Interpreter(model_path=PATH)
interpreter.allocate_tensors()
for given in interpreter.get_input_details():
    interpreter.set_tensor(given["index"], np.zeros(given["shape"], np.float32))
interpreter.invoke()""",
    "pte": """import torch
from pathlib import Path
from executorch.runtime import Runtime
runtime = Runtime.get()
{mark}
method = runtime.load_program(Path(PATH)).load_method("forward")
method.execute([torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)])""",
    "ptl": """import torch
from torch.jit.mobile import _load_for_lite_interpreter
{mark}
torch.backends.quantized.engine = "qnnpack"
_load_for_lite_interpreter(PATH)(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))""",
}
# Lines a runtime writes whatever file it opens: not the file's doing, and no app setting removes them.
RUNTIME_LINES = {
    "onnx": [],
    # LiteRT announces the XNNPACK delegate it applies by default to every model.
    "tflite": [r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."],
    # ExecuTorch's XNNPACK backend probes the CPU (ARM registers that an x86 machine does not have).
    "pte": [r"\[cpuinfo_utils\.cpp:\d+\] .*"],
    # torch deprecates the quantized tensor types that every int8 TorchScript Lite file holds.
    "ptl": [r"\[W\d+ [\d:.]+ Quantizer\.cpp:\d+\] Warning: torch\.quantize_per_tensor, .* are deprecated .*"],
}


def load_stderr(name: str, path) -> str:
    """What loading and running ``path`` writes to file descriptor 2 once the runtime is imported."""
    code = f"import sys\nPATH = {str(path)!r}\n" + LOADS[name].format(
        mark=f"sys.stderr.write({MARK!r} + '\\n'); sys.stderr.flush()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stderr.split(MARK + "\n", 1)[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LOADS))
def test_a_shipped_file_loads_and_runs_with_nothing_on_stderr(name, artifacts):
    fmt = BY_NAME[name]
    assert fmt.shipped
    unexpected = [line for line in load_stderr(name, artifacts / fmt.filename).splitlines()
                  if not any(re.fullmatch(pattern, line) for pattern in RUNTIME_LINES[name])]
    assert unexpected == [], f"{fmt.filename} loads with messages on stderr"
